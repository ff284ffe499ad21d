"""The call ledger against moto with a clock we move: slots that free themselves at their end
time (no cleanup, no TTL), the day's budget, settling once, and the deadline arithmetic."""

from __future__ import annotations

import pytest
from token_vendor.api.schedule import call_deadline, fire_time, schedule_name
from token_vendor.core.deadline import Deadline
from token_vendor.core.ending import EndReason
from token_vendor.core.errors import CallLimitExceeded, DependencyUnavailable
from token_vendor.core.ids import CallId, UserId
from token_vendor.core.ledger import CallLedger
from token_vendor.core.settings import CallLimits

from tests.support.aws import Aws
from tests.support.clock import START, Clock
from tests.support.env import TABLE

LIMITS = CallLimits(concurrent=2, seconds_per_day=1800)
USER = UserId("u")


def ledger(aws: Aws, clock: Clock, limits: CallLimits = LIMITS) -> CallLedger:
    return CallLedger(TABLE, limits, aws.dynamodb, clock=clock)


def deadline() -> Deadline:
    return Deadline(9.0)


def test_a_slot_is_free_once_its_call_has_passed_its_end_without_any_cleanup(aws: Aws) -> None:
    clock = Clock(START + 5)
    calls = ledger(aws, clock)
    calls.admit(USER, int(START) + 65, deadline())
    calls.admit(USER, int(START) + 125, deadline())
    with pytest.raises(CallLimitExceeded) as full:
        calls.admit(USER, int(START) + 185, deadline())
    assert full.value.limit == "concurrent" and full.value.retry_after == 60

    clock.now = START + 65  # the first call's end: nothing settled it, nothing deleted it
    third = calls.admit(USER, int(START) + 125, deadline())

    assert third.slot == 0 and third.seconds == 60


def test_the_budget_counts_reservations_and_refuses_what_it_cannot_cover(aws: Aws) -> None:
    clock = Clock(START)
    calls = ledger(aws, clock, CallLimits(concurrent=5, seconds_per_day=1000))
    first = calls.admit(USER, int(START) + 600, deadline())
    assert first.seconds == 600 and first.minutes_left == 6

    with pytest.raises(CallLimitExceeded) as refused:
        calls.admit(USER, int(START) + 600, deadline())

    assert refused.value.limit == "minutes" and refused.value.minutes_left == 6
    assert refused.value.retry_after == 86400 - int(START) % 86400
    assert "6 call minutes left today" in refused.value.detail
    assert calls.admit(USER, int(START) + 400, deadline()).minutes_left == 0  # exactly fits


def test_a_new_utc_day_starts_a_new_budget(aws: Aws) -> None:
    clock = Clock(START)
    calls = ledger(aws, clock, CallLimits(concurrent=5, seconds_per_day=600))
    calls.admit(USER, int(START) + 600, deadline())
    clock.now = (START // 86400 + 1) * 86400 + 1

    assert calls.admit(USER, int(clock.now) + 600, deadline()).minutes_left == 0


def test_settling_returns_the_unused_part_exactly_once(aws: Aws) -> None:
    clock = Clock(START)
    calls = ledger(aws, clock)
    reservation = calls.admit(USER, int(START) + 600, deadline())
    calls.record(reservation, CallId("rtc_1"), deadline())
    clock.now = START + 120.4
    (call,) = calls.view(USER, deadline()).calls

    assert calls.settle(call, EndReason.HANGUP, deadline()) == (1800 - 121) // 60
    assert calls.settle(call, EndReason.HANGUP, deadline()) is None  # a duplicate changes nothing
    view = calls.view(USER, deadline())
    assert view.minutes_left == (1800 - 121) // 60 and view.calls[0].done


def test_the_first_cause_recorded_stands_and_a_new_call_in_the_slot_has_none(aws: Aws) -> None:
    clock = Clock(START)
    calls = ledger(aws, clock, CallLimits(concurrent=1, seconds_per_day=1800))
    calls.record(calls.admit(USER, int(START) + 600, deadline()), CallId("rtc_1"), deadline())
    (call,) = calls.view(USER, deadline()).calls
    assert call.reason is None

    # The deadline is recorded before its upstream hangup; the page's hangup settles after.
    assert calls.claim_end(call, EndReason.DEADLINE, deadline()) is True
    assert calls.claim_end(call, EndReason.POLICY, deadline()) is False
    assert calls.view(USER, deadline()).calls[0].reason == "deadline"
    assert calls.settle(call, EndReason.HANGUP, deadline()) is not None
    (ended,) = calls.view(USER, deadline()).calls
    assert ended.done and ended.reason == "deadline"
    assert calls.claim_end(ended, EndReason.POLICY, deadline()) is False  # ended: nothing moves

    clock.now = START + 60
    calls.record(calls.admit(USER, int(START) + 660, deadline()), CallId("rtc_2"), deadline())
    (second,) = calls.view(USER, deadline()).calls
    assert second.id == "rtc_2" and second.reason is None and not second.done
    assert calls.settle(second, EndReason.SPEND_LIMIT, deadline()) is not None
    assert calls.view(USER, deadline()).calls[0].reason == "spend_limit"


def test_an_unknown_end_reason_is_a_bug_not_a_record(aws: Aws) -> None:
    calls = ledger(aws, Clock(START))
    calls.record(calls.admit(USER, int(START) + 600, deadline()), CallId("rtc_1"), deadline())
    (call,) = calls.view(USER, deadline()).calls
    # The ledger takes an `EndReason`: an unknown word fails where it would become one,
    # before anything is written.
    with pytest.raises(ValueError, match="budget"):
        calls.settle(call, EndReason("budget"), deadline())
    assert not calls.view(USER, deadline()).calls[0].done


def test_a_released_reservation_gives_back_everything_and_its_slot(aws: Aws) -> None:
    clock = Clock(START)
    calls = ledger(aws, clock, CallLimits(concurrent=1, seconds_per_day=600))
    reservation = calls.admit(USER, int(START) + 600, deadline())

    assert calls.release(reservation, deadline()) is True
    assert calls.release(reservation, deadline()) is False
    assert calls.admit(USER, int(START) + 600, deadline()).minutes_left == 0


def test_users_do_not_share_slots_or_minutes(aws: Aws) -> None:
    clock = Clock(START)
    calls = ledger(aws, clock, CallLimits(concurrent=1, seconds_per_day=600))
    calls.admit(UserId("alice"), int(START) + 600, deadline())

    assert calls.admit(UserId("bob"), int(START) + 600, deadline()).slot == 0


def test_no_time_left_is_unavailable_before_any_write(aws: Aws) -> None:
    calls = ledger(aws, Clock(START))

    with pytest.raises(DependencyUnavailable):
        calls.admit(USER, int(START) + 600, Deadline(0.5))
    assert aws.quota_items() == []


@pytest.mark.parametrize(
    ("started", "seconds", "precision", "ends_at"),
    [
        (1_000_000_010.7, 600, 60, 1_000_000_560),  # the last minute boundary before 610.7
        (1_000_000_020.0, 600, 60, 1_000_000_620),  # on a boundary already
        (1_000_000_010.7, 5, 1, 1_000_000_015),
    ],
)
def test_the_promised_end_is_a_scheduler_boundary_never_past_the_profiles_limit(
    started: float, seconds: int, precision: int, ends_at: int
) -> None:
    promised = call_deadline(started, seconds, precision)

    assert promised == ends_at and promised <= started + seconds
    # Scheduler fires somewhere in [at, at + precision): ended by the promise.
    assert fire_time(promised, precision) + precision == promised


def test_schedule_names_are_valid_for_any_call_id() -> None:
    assert schedule_name("rtc_abc") == "call-rtc_abc"
    odd = schedule_name("rtc/" + "x" * 200)
    assert odd.startswith("call-") and len(odd) <= 64


def test_a_claimed_cause_is_replaced_or_withdrawn_only_while_it_is_the_one_held(aws: Aws) -> None:
    calls = ledger(aws, Clock(START))
    calls.record(calls.admit(USER, int(START) + 600, deadline()), CallId("rtc_1"), deadline())
    call = calls.view(USER, deadline()).find("rtc_1")
    assert call is not None and calls.claim_end(call, EndReason.HANGUP, deadline())

    assert (
        calls.replace_end(call, EndReason.POLICY, EndReason.CLOSED, deadline()) is False
    )  # not held
    assert calls.replace_end(call, EndReason.HANGUP, EndReason.CLOSED, deadline()) is True
    assert calls.replace_end(call, EndReason.HANGUP, None, deadline()) is False  # closed stands
    assert calls.view(USER, deadline()).calls[0].reason == "closed"
    assert calls.replace_end(call, EndReason.CLOSED, None, deadline()) is True
    assert calls.view(USER, deadline()).find("rtc_1", live_only=True) == call  # withdrawn
    calls.settle(call, EndReason.HANGUP, deadline())
    assert calls.view(USER, deadline()).find("rtc_1", live_only=True) is None
    assert calls.view(USER, deadline()).find("rtc_2") is None


def test_a_lowered_limit_admits_nothing_while_calls_beyond_it_run(aws: Aws) -> None:
    """A plan downgraded (or an override expired) while calls run in slots past the new
    limit: slot 0 being free is not enough, the calls beyond count until they end."""
    clock = Clock(START)
    wide = ledger(aws, clock, CallLimits(concurrent=3, seconds_per_day=3600))
    wide.admit(USER, int(START) + 300, deadline())
    wide.admit(USER, int(START) + 200, deadline())
    third = wide.admit(USER, int(START) + 100, deadline())
    assert third.slot == 2
    narrow = ledger(aws, clock, CallLimits(concurrent=1, seconds_per_day=3600))
    clock.now = START + 50  # all three run

    with pytest.raises(CallLimitExceeded) as refused:
        narrow.admit(USER, int(clock.now) + 60, deadline())
    assert refused.value.limit == "concurrent"
    assert "3 calls in progress, more than the 1 now allowed at once" in refused.value.detail
    assert refused.value.retry_after == 50  # the first of them to end, slot 2's

    clock.now = START + 250  # slot 2 and slot 1 ended; slot 0 still runs
    with pytest.raises(CallLimitExceeded) as still:
        narrow.admit(USER, int(clock.now) + 60, deadline())
    assert "1 call in progress, the most allowed at once" in still.value.detail

    clock.now = START + 300  # slot 0's end: nothing runs
    assert narrow.admit(USER, int(clock.now) + 60, deadline()).slot == 0


def test_a_free_slot_under_the_limit_is_not_taken_while_a_call_beyond_it_runs(aws: Aws) -> None:
    clock = Clock(START)
    wide = ledger(aws, clock, CallLimits(concurrent=3, seconds_per_day=3600))
    for ends in (100, 100, 400):
        wide.admit(USER, int(START) + ends, deadline())
    clock.now = START + 150  # slots 0 and 1 are free, slot 2 runs until +400
    narrow = ledger(aws, clock, CallLimits(concurrent=2, seconds_per_day=3600))

    with pytest.raises(CallLimitExceeded) as refused:
        narrow.admit(USER, int(clock.now) + 60, deadline())
    assert "1 call in progress, begun under a higher limit" in refused.value.detail
    assert refused.value.retry_after == 250
