"""What a GPT-Live session costs, and how it is charged: voice by the second (active and
standby, from cumulative usage totals), delegated backend work by its tokens, each exactly
once, through the real spend ledger (moto)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from token_vendor.core.ids import CallId, UserId
from token_vendor.core.pricing import (
    DEFAULT_PRICES_FILE,
    LivePrice,
    TokenPrice,
    backend_cost,
    live_cost,
    load_prices,
)
from token_vendor.core.spend import SpendLedger, SpendLimits

from tests.support.aws import Aws
from tests.support.env import TABLE

PRICES = load_prices(DEFAULT_PRICES_FILE, "", [])
LIVE = LivePrice(Decimal("0.05"), Decimal("0.02"))
CALL, USER = CallId("live_1"), UserId("u")


def test_the_shipped_table_prices_both_live_models_per_second() -> None:
    for model in ("gpt-live-1", "gpt-live-1.1"):
        price, known = PRICES.for_live(model)
        assert known and price == LIVE
    # 15 s, what each WebRTC create bills up front: 12,500 micro-dollars.
    assert live_cost(15, 0, LIVE) == 12_500
    assert live_cost(60, 0, LIVE) == 50_000 and live_cost(0, 60, LIVE) == 20_000


def test_an_unknown_live_model_is_charged_the_dearest_rate_never_free() -> None:
    price, known = PRICES.for_live("gpt-live-9")
    assert not known and price.active_per_minute == Decimal("0.05")
    assert price.standby_per_minute >= Decimal("0.05")


def test_charging_differences_of_cumulative_totals_ends_exact() -> None:
    """Usage comes as running totals at any cadence; each charge is the cost of the new
    total less the cost of the last: the sum is the cost of the final total, to the
    micro-dollar, never the sum of per-update roundings."""
    totals = [(1.3, 0), (2.7, 0), (2.7, 4.1), (31, 4.1), (31.02, 9.9)]
    charged, last = 0, 0
    for active, paused in totals:
        cost = live_cost(active, paused, LIVE)
        charged += cost - last
        last = cost
    assert charged == live_cost(31.02, 9.9, LIVE)


def test_a_delegated_response_is_priced_by_its_model_with_cached_input_cheaper() -> None:
    price = TokenPrice(Decimal("1.25"), Decimal("0.125"), Decimal("10"))
    usage = {
        "input_tokens": 1000,
        "input_tokens_details": {"cached_tokens": 400},
        "output_tokens": 200,
        "output_tokens_details": {"reasoning_tokens": 150},
    }
    # 600 fresh at 1.25 + 400 cached at 0.125 + 200 out at 10 = 750 + 50 + 2000
    assert backend_cost(usage, price) == 2_800
    assert (
        backend_cost({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 99}}, price)
        == 2
    )
    assert PRICES.for_backend("gpt-5-mini")[1] and not PRICES.for_backend("mystery")[1]


@pytest.fixture
def ledger(aws: Aws) -> SpendLedger:
    return SpendLedger(TABLE, SpendLimits(user_micros=1_000_000), aws.dynamodb)


def test_a_running_total_is_charged_once_whoever_reports_it(ledger: SpendLedger) -> None:
    first = ledger.charge_total(call_id=CALL, user=USER, counter="voice", total_micros=12_500)
    again = ledger.charge_total(call_id=CALL, user=USER, counter="voice", total_micros=12_500)
    lower = ledger.charge_total(call_id=CALL, user=USER, counter="voice", total_micros=9_000)
    more = ledger.charge_total(call_id=CALL, user=USER, counter="voice", total_micros=20_000)

    assert (first.counted, first.micros) == (True, 12_500)
    assert (again.counted, lower.counted) == (False, False)  # a watcher and its successor
    assert (more.counted, more.micros) == (True, 7_500)
    assert ledger.call_total(CALL) == 20_000
    assert more.day is not None and more.day.user_micros == 20_000


def test_a_total_and_per_event_charges_add_up_on_one_call(ledger: SpendLedger) -> None:
    ledger.charge_total(call_id=CALL, user=USER, counter="voice", total_micros=12_500)
    ledger.charge(call_id=CALL, user=USER, event_key="resp:r1", micros=2_800)
    ledger.charge_total(call_id=CALL, user=USER, counter="voice", total_micros=15_000)

    assert ledger.call_total(CALL) == 15_000 + 2_800
    assert ledger.today(USER).user_micros == 15_000 + 2_800


def test_a_total_moved_by_another_writer_is_charged_from_where_it_stands(
    ledger: SpendLedger, aws: Aws
) -> None:
    """Between the read and the write, another watcher charged a higher total: the write's
    condition fails, the total is read again, and only what is left is charged."""
    ledger.charge_total(call_id=CALL, user=USER, counter="voice", total_micros=1_000)
    other = SpendLedger(TABLE, SpendLimits(user_micros=1_000_000), aws.dynamodb)
    reads = 0
    read = ledger._stored

    def stale_once(*args: object, **kwargs: object) -> int:
        nonlocal reads
        reads += 1
        if reads == 1:
            other.charge_total(call_id=CALL, user=USER, counter="voice", total_micros=4_000)
            return 1_000  # what this watcher read before the other's write
        return read(*args, **kwargs)  # type: ignore[arg-type]

    ledger._stored = stale_once  # type: ignore[method-assign]
    charge = ledger.charge_total(call_id=CALL, user=USER, counter="voice", total_micros=5_000)

    assert (charge.counted, charge.micros) == (True, 1_000)
    assert ledger.call_total(CALL) == 5_000 and ledger.today(USER).user_micros == 5_000
