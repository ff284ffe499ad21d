"""The spend ledger (moto): exact micro-dollars per user and day, each event charged once,
the per-user and global budgets, the SPEND_LIMITS setting."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from token_vendor.core.deadline import Deadline
from token_vendor.core.errors import DependencyUnavailable
from token_vendor.core.ids import CallId, UserId
from token_vendor.core.pricing import DEFAULT_PRICES_FILE, load_prices, response_cost
from token_vendor.core.spend import (
    CHARGE_ATTEMPTS,
    Charge,
    DaySpend,
    SpendLedger,
    SpendLimits,
    usd,
)

from tests.support.aws import Aws
from tests.support.clock import Clock
from tests.support.env import TABLE
from tests.support.realtime import usage

DAY_START = 1_800_057_600.0  # a UTC midnight (2027-01-16)
ALICE, BOB, CAROL = UserId("alice"), UserId("bob"), UserId("carol")
RTC_1, RTC_2 = CallId("rtc_1"), CallId("rtc_2")
RTC_A, RTC_B = CallId("rtc_a"), CallId("rtc_b")


def day_of(charge: Charge) -> DaySpend:
    assert charge.day is not None, "the day's totals were not read"
    return charge.day


def ledger(aws: Aws, clock: Clock, limits: str = "usd/day=2.00,global:usd/day=5") -> SpendLedger:
    problems: list[str] = []
    parsed = SpendLimits.parse(limits, problems)
    assert problems == []
    return SpendLedger(TABLE, parsed, aws.dynamodb, clock=clock)


def test_a_scripted_sequence_across_two_models(aws: Aws) -> None:
    """Two calls of one user, one on gpt-realtime-2.1 and one on the mini model, each
    response priced by the table and charged; a repeated event (an overlapping watcher)
    is not counted twice. Every amount is worked out by hand in the comments."""
    problems: list[str] = []
    table = load_prices(DEFAULT_PRICES_FILE, "", problems)
    full, mini = table.for_model("gpt-realtime-2.1")[0], table.for_model("gpt-realtime-2.1-mini")[0]
    clock = Clock(DAY_START + 3600)
    spend = ledger(aws, clock)
    script: list[tuple[str, str, Any, dict[str, Any], int]] = [
        # call, event, price, usage, expected micro-dollars
        # 12*4 + 9*24 + 61*64 = 48 + 216 + 3904
        ("rtc_a", "resp:1", full, usage(text_in=12, text_out=9, audio_out=61), 4168),
        # (300-12)*4 + 12*0.4 + 500*32 + 20*24 + 150*64 = 1152 + 4.8 + 16000 + 480 + 9600
        (
            "rtc_a",
            "resp:2",
            full,
            usage(text_in=300, audio_in=500, cached_text=12, text_out=20, audio_out=150),
            27237,
        ),
        # 12*0.6 + 9*2.4 + 61*20 = 7.2 + 21.6 + 1220 = 1248.8
        ("rtc_b", "resp:3", mini, usage(text_in=12, text_out=9, audio_out=61), 1249),
        # the same event again, as a second watcher would see it: nothing added
        ("rtc_b", "resp:3", mini, usage(text_in=12, text_out=9, audio_out=61), 0),
        # (800-700)*0.6 + 700*0.06 + (2000-1000)*10 + 1000*0.3 + 40*2.4 + 400*20
        # = 60 + 42 + 10000 + 300 + 96 + 8000
        (
            "rtc_b",
            "resp:4",
            mini,
            usage(800, 2000, 0, 700, 1000, 0, 40, 400),
            18498,
        ),
        # the same response id in another call is another event
        ("rtc_a", "resp:3", full, usage(text_in=1), 4),
    ]
    total = 0
    for call, event, price, used, expected in script:
        cost = response_cost(used, price)
        charge = spend.charge(call_id=CallId(call), user=ALICE, event_key=event, micros=cost)
        assert charge.micros == expected, (call, event)
        assert charge.counted == (expected != 0)
        total += expected
        assert day_of(charge).user_micros == total
    assert total == 4168 + 27237 + 1249 + 18498 + 4 == 51156
    assert spend.call_total(RTC_A) == 4168 + 27237 + 4
    assert spend.call_total(RTC_B) == 1249 + 18498
    today = spend.today(ALICE)
    assert today.user_micros == today.global_micros == 51156
    assert today.user_left == 2_000_000 - 51156 and usd(today.user_micros) == "0.051156"
    assert today.resets_after == 86400 - 3600


def test_the_global_day_adds_every_user_and_a_new_day_starts_at_zero(aws: Aws) -> None:
    clock = Clock(DAY_START + 86399)
    spend = ledger(aws, clock)
    spend.charge(call_id=RTC_1, user=ALICE, event_key="resp:1", micros=700_000)
    bob = spend.charge(call_id=RTC_2, user=BOB, event_key="resp:1", micros=300_000)
    assert (day_of(bob).user_micros, day_of(bob).global_micros) == (300_000, 1_000_000)
    assert day_of(bob).resets_after == 1
    clock.now = DAY_START + 86400
    fresh = spend.today(ALICE)
    assert (fresh.user_micros, fresh.global_micros) == (0, 0)
    items = {item["pk"]["S"]: item for item in aws.quota_items()}
    ttl = int(items["spend#user#alice#2027-01-16"]["ttl"]["N"])
    assert ttl == DAY_START + 86400 + 2 * 86400


def test_budgets_user_and_global(aws: Aws) -> None:
    spend = ledger(aws, Clock(DAY_START + 10), "usd/day=1.00,global:usd/day=1.50")
    first = spend.charge(call_id=RTC_1, user=ALICE, event_key="resp:1", micros=900_000)
    assert day_of(first).left == 100_000 and not day_of(first).exhausted
    assert day_of(first).would_cross(100_000) and not day_of(first).would_cross(99_999)
    second = spend.charge(call_id=RTC_1, user=ALICE, event_key="resp:2", micros=200_000)
    assert day_of(second).exhausted and day_of(second).user_left == 0
    # Bob has his own budget, but the kill switch is shared: 1.1 of 1.5 spent.
    bob = spend.charge(call_id=RTC_2, user=BOB, event_key="resp:1", micros=300_000)
    assert day_of(bob).user_left == 700_000 and day_of(bob).global_left == 100_000
    assert day_of(bob).left == 100_000
    spend.charge(call_id=RTC_2, user=BOB, event_key="resp:2", micros=100_000)
    assert spend.today(BOB).exhausted and spend.today(CAROL).exhausted


def test_no_limits_means_metering_only(aws: Aws) -> None:
    spend = ledger(aws, Clock(DAY_START), "")
    charge = spend.charge(call_id=RTC_1, user=ALICE, event_key="resp:1", micros=10**9)
    assert day_of(charge).left is None and not day_of(charge).exhausted
    assert not day_of(charge).would_cross(10**12) and not spend.limits.any


def test_repeated_charges_of_one_event_count_once(aws: Aws) -> None:
    # Interleaved repeats, as overlapping watchers deliver them. (Atomicity under real
    # concurrency is DynamoDB's; moto in-process is not atomic across threads, so the
    # concurrent case runs against the serialising stand-in in tests/integration.)
    spend = ledger(aws, Clock(DAY_START))
    counted = [
        spend.charge(call_id=RTC_1, user=ALICE, event_key=f"resp:{i % 5}", micros=1000).counted
        for i in range(20)
    ]
    assert counted == [True] * 5 + [False] * 15
    assert spend.today(ALICE).user_micros == 5000 == spend.call_total(RTC_1)


@pytest.mark.parametrize(
    ("raw", "user", "everyone"),
    [
        ("usd/day=2.00", 2_000_000, None),
        (" usd / day = 2 ", 2_000_000, None),
        ("usd/day=0.000001", 1, None),
        ("usd/day=2.5,global:usd/day=100", 2_500_000, 100_000_000),
        ("global:usd/day=0", None, 0),
        ("", None, None),
    ],
)
def test_spend_limits_parse(raw: str, user: int | None, everyone: int | None) -> None:
    problems: list[str] = []
    limits = SpendLimits.parse(raw, problems)
    assert problems == [] and (limits.user_micros, limits.global_micros) == (user, everyone)


@pytest.mark.parametrize(
    "raw",
    [
        "usd/week=2",
        "2.00",
        "usd/day=-1",
        "usd/day=1.0000001",
        "usd/day=2,usd/day=3",
        "eur/day=2",
        "global:usd/day=1,global:usd/day=2",
    ],
)
def test_bad_spend_limits_are_named(raw: str) -> None:
    problems: list[str] = []
    SpendLimits.parse(raw, problems)
    assert problems and all("SPEND_LIMITS" in p for p in problems)


def test_dynamodb_failures_are_dependency_errors(aws: Aws) -> None:
    spend = ledger(aws, Clock(DAY_START))
    with Stubber(aws.dynamodb) as stub:
        stub.add_client_error("transact_write_items", "ProvisionedThroughputExceededException")
        with pytest.raises(DependencyUnavailable, match="ProvisionedThroughput"):
            spend.charge(call_id=RTC_1, user=ALICE, event_key="resp:1", micros=5)
        stub.add_client_error("batch_get_item", "InternalServerError")
        with pytest.raises(DependencyUnavailable):
            spend.today(ALICE)


# --- concurrent charges: DynamoDB's TransactionConflict ----------------------------------------


class Conflicting:
    """moto's DynamoDB, but the first `conflicts` transactions are cancelled the way real
    DynamoDB cancels one that met another on an item (moto never does): nothing written,
    `TransactionCanceledException` with a `TransactionConflict` reason."""

    def __init__(self, client: Any, conflicts: int) -> None:
        self._client = client
        self.conflicts = conflicts
        self.attempts = 0
        self.items: list[list[dict[str, Any]]] = []

    def transact_write_items(self, **request: Any) -> Any:
        self.attempts += 1
        self.items.append(request["TransactItems"])
        if self.conflicts > 0:
            self.conflicts -= 1
            reasons = [{"Code": "None"} for _ in request["TransactItems"]]
            reasons[-1] = {
                "Code": "TransactionConflict",
                "Message": "Transaction is ongoing for the item",
            }
            raise ClientError(
                {
                    "Error": {
                        "Code": "TransactionCanceledException",
                        "Message": "Transaction cancelled, please refer cancellation reasons "
                        "for specific reasons [None, TransactionConflict]",
                    },
                    "CancellationReasons": reasons,
                },
                "TransactWriteItems",
            )
        return self._client.transact_write_items(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def conflicting_ledger(
    aws: Aws, conflicts: int, limits: str = "usd/day=2.00,global:usd/day=5"
) -> tuple[SpendLedger, Conflicting, list[float]]:
    problems: list[str] = []
    parsed = SpendLimits.parse(limits, problems)
    client = Conflicting(aws.dynamodb, conflicts)
    pauses: list[float] = []
    spend = SpendLedger(
        TABLE, parsed, client, clock=Clock(DAY_START), sleep=pauses.append, jitter=lambda t: t
    )
    return spend, client, pauses


def test_a_conflicted_charge_is_tried_again_and_counts_once(aws: Aws) -> None:
    spend, client, pauses = conflicting_ledger(aws, conflicts=2)
    charge = spend.charge(call_id=RTC_1, user=ALICE, event_key="resp:1", micros=4168)
    assert charge.counted and charge.micros == 4168
    assert client.attempts == 3 and pauses == [0.05, 0.1]
    assert (day_of(charge).user_micros, day_of(charge).global_micros) == (4168, 4168)
    assert spend.call_total(RTC_1) == 4168
    # The same event again (the other watcher at a hand-over): refused by the meter key.
    again = spend.charge(call_id=RTC_1, user=ALICE, event_key="resp:1", micros=4168)
    assert not again.counted and day_of(again).user_micros == 4168


def test_a_charge_that_conflicts_every_time_is_raised_not_dropped(aws: Aws) -> None:
    spend, client, pauses = conflicting_ledger(aws, conflicts=100)
    with pytest.raises(DependencyUnavailable, match="TransactionCanceled"):
        spend.charge(call_id=RTC_1, user=ALICE, event_key="resp:1", micros=4168)
    assert client.attempts == CHARGE_ATTEMPTS and len(pauses) == CHARGE_ATTEMPTS - 1
    assert spend.today(ALICE).user_micros == 0 == spend.call_total(RTC_1)
    # Kept by the caller and tried later, it is counted once.
    client.conflicts = 0
    assert spend.charge(call_id=RTC_1, user=ALICE, event_key="resp:1", micros=4168).counted
    assert spend.today(ALICE).user_micros == 4168


def test_conflict_retries_stay_inside_the_deadline(aws: Aws) -> None:
    """The pauses use up the deadline: each retry must leave room for its pause and one
    attempt in what is left after the pauses before it."""
    client = Conflicting(aws.dynamodb, conflicts=100)
    elapsed = Clock(0.0)
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        elapsed.now += seconds

    limits = SpendLimits.parse("usd/day=2.00", [])
    spend = SpendLedger(
        TABLE, limits, client, clock=Clock(DAY_START), sleep=sleep, jitter=lambda t: t
    )
    with pytest.raises(DependencyUnavailable):
        spend.charge(
            call_id=RTC_1,
            user=ALICE,
            event_key="resp:1",
            micros=5,
            deadline=Deadline(3.2, clock=elapsed),
        )
    # 0.05 + 3 fits in 3.2, then 0.1 + 3 in the 3.15 left; 0.2 + 3 not in the 3.05 left
    # (a clock that did not move would have allowed it, and a fourth attempt).
    assert pauses == [0.05, 0.1] and client.attempts == 3
    assert elapsed.now == pytest.approx(0.15)


def test_everyone_s_day_is_left_out_without_a_global_limit(aws: Aws) -> None:
    """Every charge in the service would contend for one item that nothing reads."""
    spend, client, _ = conflicting_ledger(aws, conflicts=0, limits="usd/day=2.00")
    spend.charge(call_id=RTC_1, user=ALICE, event_key="resp:1", micros=100)
    keys = [item["Update"]["Key"]["pk"]["S"] for item in client.items[0]]
    assert keys == ["charge#rtc_1#resp:1", "meter#rtc_1", "spend#user#alice#2027-01-16"]
    assert {item["pk"]["S"] for item in aws.quota_items()} == set(keys)
    with_global, client, _ = conflicting_ledger(aws, 0, "usd/day=2.00,global:usd/day=5")
    with_global.charge(call_id=RTC_1, user=ALICE, event_key="resp:2", micros=100)
    assert client.items[0][-1]["Update"]["Key"]["pk"]["S"] == "spend#all#2027-01-16"


def test_every_item_a_charge_writes_stays_small_however_long_the_call(aws: Aws) -> None:
    """A transactional write costs 2 write units per started KB of its item: the event keys
    that refuse a second charge live in items of their own, not in a set on the call's meter
    that would grow all hour (a response every 5 s is 720 keys).

    Charging the hour's 720 responses one by one took 30 s in moto (it copies the whole table
    for every transaction). What makes every item small however long the call is what each
    charge does, and that is checked at every charge: it adds exactly one item, its event's,
    and the items every charge updates (the call's meter, the user's day) keep their
    attributes, each a string that stays the same or a number (only the sums' digits grow).
    Two minutes of responses show it charge by charge; the item count at the end shows no
    charge wrote anything else."""
    spend = SpendLedger(TABLE, SpendLimits.parse("usd/day=100", []), aws.dynamodb)
    charges = 24  # two minutes of a call at a response every 5 s

    def items() -> dict[str, dict[str, Any]]:
        return {item["pk"]["S"]: item for item in aws.quota_items()}

    def masked(item: dict[str, Any]) -> dict[str, Any]:
        """The item with each number's value hidden: what must not change between charges."""
        assert all(set(value) <= {"S", "N"} for value in item.values()), item  # no set, no list
        return {name: ({"N": "#"} if "N" in value else value) for name, value in item.items()}

    def charge(n: int) -> None:
        spend.charge(call_id=RTC_1, user=ALICE, event_key=f"resp:resp_{n:021d}", micros=10)

    def read(pk: str) -> dict[str, Any]:
        return dict(
            aws.dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": pk}}, ConsistentRead=True)[
                "Item"
            ]
        )

    charge(0)
    updated = {pk: masked(item) for pk, item in items().items() if not pk.startswith("charge#")}
    assert len(updated) == 2  # the call's meter and the user's day
    for n in range(1, charges):
        charge(n)
        assert masked(read(f"charge#{RTC_1}#resp:resp_{n:021d}"))  # its own item
        assert {pk: masked(read(pk)) for pk in updated} == updated
    assert (
        spend.charge(
            call_id=RTC_1, user=ALICE, event_key="resp:resp_" + "0" * 21, micros=10
        ).counted
        is False
    )
    # One item per charge and the two updated: no charge wrote any other item.
    sizes = [len(json.dumps(item)) for item in aws.quota_items()]
    assert len(sizes) == charges + 2 and max(sizes) < 200
    assert spend.call_total(RTC_1) == charges * 10 == spend.today(ALICE).user_micros


def test_an_event_key_longer_than_any_openai_id_is_hashed(aws: Aws) -> None:
    spend = SpendLedger(TABLE, SpendLimits.parse("usd/day=100", []), aws.dynamodb)
    assert spend.charge(
        call_id=RTC_1, user=ALICE, event_key="tr:" + "x" * 3000 + ":0", micros=10
    ).counted
    assert (
        spend.charge(
            call_id=RTC_1, user=ALICE, event_key="tr:" + "x" * 3000 + ":0", micros=10
        ).counted
        is False
    )
    assert max(len(item["pk"]["S"]) for item in aws.quota_items()) <= 512


# --- the day's totals read after a charge ---------------------------------------------------------


class FailingReads:
    """moto's DynamoDB, but reading the day's totals fails the first `failures` times."""

    def __init__(self, client: Any, failures: int) -> None:
        self._client = client
        self.failures = failures

    def batch_get_item(self, **request: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise ClientError(
                {"Error": {"Code": "InternalServerError", "Message": "try again"}}, "BatchGetItem"
            )
        return self._client.batch_get_item(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_charge_whose_totals_cannot_be_read_is_still_counted(aws: Aws) -> None:
    """The transaction is in: reporting it as not recorded would make the watcher retry it,
    the retry be refused as already charged, and the money never be reported as spent."""
    parsed = SpendLimits.parse("usd/day=2.00", [])
    client = FailingReads(aws.dynamodb, failures=1)
    spend = SpendLedger(TABLE, parsed, client, clock=Clock(DAY_START))
    charge = spend.charge(call_id=RTC_1, user=ALICE, event_key="resp:1", micros=4168)
    assert (charge.micros, charge.counted, charge.day) == (4168, True, None)
    assert spend.call_total(RTC_1) == 4168 == spend.today(ALICE).user_micros
    again = spend.charge(call_id=RTC_1, user=ALICE, event_key="resp:1", micros=4168)
    assert not again.counted and day_of(again).user_micros == 4168


class RawBody:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def test_the_totals_read_retries_only_inside_the_deadline(aws: Aws) -> None:
    """DynamoDB answers the read with 500s, which botocore retries on its own: no retry may
    start once the caller's deadline has no room for it."""
    spend = ledger(aws, Clock(DAY_START))
    reads: list[str] = []

    def server_error(request: Any, **_: Any) -> Any:
        if request.headers.get("X-Amz-Target", b"").endswith(b"BatchGetItem"):
            reads.append("read")
            body = b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError"}'
            return AWSResponse(request.url, 500, {}, RawBody(body))
        return None

    # After the ledger's own guard, before moto: only the reads fail.
    aws.dynamodb.meta.events.register_first("before-send.dynamodb", server_error)
    charge = spend.charge(
        call_id=RTC_1, user=ALICE, event_key="resp:1", micros=5, deadline=Deadline(1.0)
    )
    assert charge.counted and charge.day is None
    assert reads == ["read"]  # the first attempt only: a retry would not fit
