"""Quotas: one conditional write decides every window; exact Retry-After; give-back."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.config import Config
from botocore.stub import Stubber
from token_vendor.api.quota import QuotaStore
from token_vendor.api.settings import QuotaWindow
from token_vendor.core.errors import DependencyUnavailable, GlobalQuotaExceeded, QuotaExceeded
from token_vendor.core.ids import UserId

from tests.support.aws import Aws, aws_client
from tests.support.clock import START, Clock
from tests.support.env import TABLE
from tests.support.handler import window_units

MINUTE = QuotaWindow("minute", 60, 2)
DAY = QuotaWindow("day", 86400, 3)
USER = UserId("u")
ALICE, BOB, CAROL = UserId("alice"), UserId("bob"), UserId("carol")


def store(aws: Aws, clock: Clock, windows: tuple[QuotaWindow, ...] = (MINUTE, DAY)) -> QuotaStore:
    return QuotaStore(TABLE, windows, aws.dynamodb, clock=clock)


def test_each_grant_reports_what_is_left_in_every_window(aws: Aws) -> None:
    quota = store(aws, Clock(START + 10))

    first = quota.consume(USER)
    second = quota.consume(USER)

    assert [(w.name, w.remaining) for w in first.windows] == [("minute", 1), ("day", 2)]
    assert [(w.name, w.remaining) for w in second.windows] == [("minute", 0), ("day", 1)]
    assert first.windows[0].reset_after == 50


def test_the_window_that_refuses_sets_an_exact_retry_after(aws: Aws) -> None:
    clock = Clock(START + 10)
    quota = store(aws, clock)
    quota.consume(USER)
    quota.consume(USER)
    clock.now = START + 17.2

    with pytest.raises(QuotaExceeded) as caught:
        quota.consume(USER)

    assert caught.value.violated == "minute" and caught.value.retry_after == 43


def test_a_new_window_starts_at_zero(aws: Aws) -> None:
    clock = Clock(START + 59)
    quota = store(aws, clock)
    quota.consume(USER)
    quota.consume(USER)
    clock.now = START + 60  # the next minute

    assert quota.consume(USER).windows[0].remaining == 1


def test_the_longest_window_refuses_across_short_windows(aws: Aws) -> None:
    clock = Clock(START)
    quota = store(aws, clock)
    for minute in range(3):
        clock.now = START + 60 * minute
        quota.consume(USER)
    clock.now = START + 300

    with pytest.raises(QuotaExceeded) as caught:
        quota.consume(USER)

    day_end = (START // 86400 + 1) * 86400
    assert caught.value.violated == "day" and caught.value.retry_after == int(day_end - clock.now)


def test_a_refused_request_counts_nothing(aws: Aws) -> None:
    quota = store(aws, Clock(START), (QuotaWindow("minute", 60, 1),))
    quota.consume(USER)
    for _ in range(3):
        with pytest.raises(QuotaExceeded):
            quota.consume(USER)

    counters = [v for k, v in aws.quota_items()[0].items() if k.startswith("c_")]
    assert counters == [{"N": "1"}]


def test_users_are_counted_apart(aws: Aws) -> None:
    quota = store(aws, Clock(START), (QuotaWindow("minute", 60, 1),))

    quota.consume(ALICE)
    quota.consume(BOB)

    assert len(aws.quota_items()) == 2


def test_a_given_back_unit_can_be_used_again(aws: Aws) -> None:
    quota = store(aws, Clock(START), (QuotaWindow("minute", 60, 1),))
    grant = quota.consume(USER)

    assert quota.give_back(grant) is True
    assert quota.consume(USER).windows[0].remaining == 0


def test_items_carry_a_ttl_past_the_longest_window(aws: Aws) -> None:
    store(aws, Clock(START + 5)).consume(USER)

    item = aws.quota_items()[0]
    assert int(item["ttl"]["N"]) == (START // 86400 + 1) * 86400 + 3600


def throttled(aws: Aws) -> tuple[Any, Stubber]:
    stubber = Stubber(aws.dynamodb)
    return aws.dynamodb, stubber


@pytest.mark.parametrize(
    "code",
    [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "InternalServerError",
        "ResourceNotFoundException",
    ],
)
def test_dynamodb_failures_fail_closed(aws: Aws, code: str) -> None:
    stubber = Stubber(aws.dynamodb)
    stubber.add_client_error("update_item", service_error_code=code, http_status_code=400)

    with stubber, pytest.raises(DependencyUnavailable) as caught:
        store(aws, Clock(START)).consume(USER)

    assert caught.value.dependency == "quota_store"


@pytest.mark.stack  # a real socket, to a port nobody listens on
def test_an_unreachable_dynamodb_fails_closed() -> None:
    client = aws_client(
        "http://127.0.0.1:9",
        Config(connect_timeout=0.2, retries={"mode": "standard", "total_max_attempts": 1}),
    )

    with pytest.raises(DependencyUnavailable):
        QuotaStore(TABLE, (MINUTE,), client).consume(USER)


# --- the global quota (GLOBAL_QUOTAS) ------------------------------------------------------


def global_store(aws: Aws, clock: Clock, cap: int = 2) -> QuotaStore:
    return QuotaStore(
        TABLE,
        (MINUTE, DAY),
        aws.dynamodb,
        clock=clock,
        global_windows=(QuotaWindow("day", 86400, cap),),
    )


def test_the_global_cap_counts_every_user_together(aws: Aws) -> None:
    quota = global_store(aws, Clock(START + 10))
    quota.consume(ALICE)
    quota.consume(BOB)

    with pytest.raises(GlobalQuotaExceeded) as caught:
        quota.consume(CAROL)

    assert caught.value.violated == "day"
    assert caught.value.retry_after == 86400 - (START + 10) % 86400
    assert window_units(aws, "carol", "c_day_") == 0, (
        "the refused caller's own unit was not given back"
    )
    assert (window_units(aws, "alice", "c_day_"), window_units(aws, "bob", "c_day_")) == (1, 1)


def test_a_user_at_their_own_limit_spends_nothing_of_the_global_cap(aws: Aws) -> None:
    quota = global_store(aws, Clock(START + 10), cap=3)
    quota.consume(ALICE)
    quota.consume(ALICE)
    with pytest.raises(QuotaExceeded):
        quota.consume(ALICE)  # her minute is spent: refused before the global item

    quota.consume(BOB)  # the third global unit is still there


def test_a_failed_mint_gives_back_both_the_users_and_the_global_unit(aws: Aws) -> None:
    quota = global_store(aws, Clock(START + 10), cap=1)
    grant = quota.consume(ALICE)

    assert quota.give_back(grant) is True
    quota.consume(BOB)


def test_a_given_back_counter_that_returns_to_zero_is_removed(aws: Aws) -> None:
    """A user whose mints keep failing must not grow their item by one counter per window."""
    clock = Clock(START)
    quota = store(aws, clock, (QuotaWindow("second", 1, 5), QuotaWindow("day", 86400, 100)))
    for n in range(20):
        clock.now = START + n
        quota.give_back(quota.consume(USER))

    (item,) = aws.quota_items()
    assert [k for k in item if k.startswith("c_")] == []


def test_give_back_keeps_a_counter_another_mint_still_holds(aws: Aws) -> None:
    quota = store(aws, Clock(START + 10))
    kept = quota.consume(USER)
    failed = quota.consume(USER)

    quota.give_back(failed)

    (item,) = aws.quota_items()
    assert {k: v["N"] for k, v in item.items() if k.startswith("c_")} == {
        f"c_minute_{int((START + 10) // 60)}": "1",
        f"c_day_{int(START // 86400)}": "1",
    }
    assert kept.windows[0].remaining == 1
