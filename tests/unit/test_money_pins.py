"""Money rules pinned where they used to hold by accident, each seen failing with the bug
planted: the call ledger's admission refuses an overdrawn budget in its own conditional write
(the other tests leave slot 0 held, so the refusal came from the image's check after the write
failed); a refused attempt gives back everything without erasing the record of the call it
displaced; a lease is never taken while its holder holds it (only a local-stack test saw
that); the watcher's budget forecast includes the response that just became the dearest."""

from __future__ import annotations

from token_vendor.core.deadline import Deadline
from token_vendor.core.ending import EndReason
from token_vendor.core.errors import CallLimitExceeded
from token_vendor.core.ids import CallId, UserId
from token_vendor.core.lease import LeaseStore
from token_vendor.core.ledger import CallLedger
from token_vendor.core.settings import CallLimits

from tests.support.aws import Aws
from tests.support.clock import Clock
from tests.support.env import TABLE
from tests.support.watch import CALL as CALL_1
from tests.support.watch import NOW, Step, done, never, timing, watcher

START = 1_800_000_000.0  # day 20833, 08:00 UTC: the day starts with nothing used
USER = UserId("u")


def deadline() -> Deadline:
    return Deadline(9.0)


def item(aws: Aws) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = aws.dynamodb.get_item(
        TableName=TABLE, Key={"pk": {"S": f"calls#{USER}"}}, ConsistentRead=True
    )["Item"]
    return found


def test_the_admissions_own_condition_refuses_what_the_budget_cannot_cover(aws: Aws) -> None:
    """Slot 0 is free (its call is past its end) and 700 of 1000 seconds are used: a call that
    may last 400 s must be refused by the first conditional write, whatever it names."""
    clock = Clock(START)
    calls = CallLedger(TABLE, CallLimits(1, 1000), aws.dynamodb, clock=clock)
    calls.admit(USER, int(START) + 700, deadline())
    clock.now = START + 700  # its end: the slot is free, its 700 seconds stay used today

    try:
        calls.admit(USER, int(clock.now) + 400, deadline())
    except CallLimitExceeded as refused:
        assert refused.limit == "minutes"
    assert int(item(aws)["m_20833"]["N"]) == 700  # nothing was ever written over the budget


def test_a_refused_attempt_leaves_the_record_of_the_call_it_displaced(aws: Aws) -> None:
    """After the watcher ended a call at the budget, the user's next attempt is admitted into
    that call's slot, then refused (the spend is read beside the admission) and released:
    the ended call must still be found, with its cause, so its owner's hangup answers it."""
    clock = Clock(START)
    calls = CallLedger(TABLE, CallLimits(1, 3600), aws.dynamodb, clock=clock)
    calls.record(calls.admit(USER, int(START) + 600, deadline()), CallId("rtc_1"), deadline())
    (ended,) = calls.view(USER, deadline()).calls
    clock.now += 30
    calls.settle(ended, EndReason.SPEND_LIMIT, deadline())
    before = calls.view(USER, deadline())

    attempt = calls.admit(USER, int(clock.now) + 600, deadline())
    assert attempt.slot == ended.slot  # it took the ended call's slot
    assert calls.release(attempt, deadline()) is True

    after = calls.view(USER, deadline())
    kept = after.find("rtc_1")
    assert kept is not None and kept.done and kept.reason == "spend_limit"
    assert after == before  # every minute given back, the record as it was


def test_a_lease_is_not_taken_while_its_holder_holds_it(aws: Aws) -> None:
    clock = Clock(START)
    leases = LeaseStore(TABLE, aws.dynamodb, clock=clock)
    call = CallId("rtc_1")
    assert leases.acquire(call, "w_first", 60)

    clock.now += 59  # one second before the first holder's lease runs out
    assert leases.acquire(call, "w_second", 60) is False
    assert leases.state(call).holder == "w_first"

    clock.now += 2  # it stopped renewing: the lease is anybody's
    assert leases.acquire(call, "w_second", 60) is True
    leases.end(call)
    assert leases.acquire(call, "w_third", 60) is False  # an ended call is never watched again


def test_the_budget_forecast_counts_the_response_that_just_became_the_dearest(aws: Aws) -> None:
    """After resp_2, 0.424 of 1.00 is left: more than any earlier response cost (0.064), less
    than resp_2 itself (0.512). The next response like the dearest would cross: goodbye now."""
    clock = Clock(NOW)
    script: list[Step] = [
        done("resp_1", audio_out=1_000),  # 0.064
        done("resp_2", audio_out=8_000),  # 0.512: the dearest now
        done("resp_3", audio_out=100),  # the goodbye said
    ]
    watch, events, recorder, _ = watcher(aws, clock, script, limits="usd/day=1.00")

    watch.run(timing(), never)

    assert [e["type"] for e in events.sent].count("response.create") == 1
    assert recorder.ended == [(CALL_1, EndReason.SPEND_LIMIT)]
