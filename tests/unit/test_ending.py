"""Ending a call (core.ending.CallEnder), the one way the owner's hangup, the deadline and the
watcher end calls: its steps and its races, against in-memory fakes of its ports, each race
planted at the step where it happens."""

from __future__ import annotations

import pytest
from token_vendor.core.deadline import Deadline
from token_vendor.core.ending import CallEnder, EndReason
from token_vendor.core.errors import CallNotFound, DependencyUnavailable, UpstreamRejected
from token_vendor.core.ids import CallId, UserId

from tests.support.calls import FakeLedger, FakeSchedules, FakeUpstream

ANN, BOB = UserId("ann"), UserId("bob")
CALL = CallId("rtc_1")


def deadline() -> Deadline:
    return Deadline(9.0)


def live_call(seconds: int = 600) -> tuple[FakeLedger, FakeUpstream]:
    ledger = FakeLedger()
    ledger.place(ANN, CALL, seconds)
    return ledger, FakeUpstream(live={CALL})


def ender(
    ledger: FakeLedger, upstream: FakeUpstream, infer: EndReason = EndReason.CLOSED
) -> CallEnder:
    return CallEnder(
        ledger, upstream, schedules=FakeSchedules(), infer=lambda call, deadline: infer
    )


# --- the owner ------------------------------------------------------------------------------


def test_the_owner_claims_hangs_up_then_settles_and_hears_hangup() -> None:
    ledger, upstream = live_call()
    ledger.time += 60

    ended = ender(ledger, upstream).end_for_owner(user=ANN, call_id=CALL, deadline=deadline())

    assert ledger.writes == ["claim hangup", "settle hangup"]
    assert upstream.hung_up == [CALL] and CALL not in upstream.live
    assert ended.reason is EndReason.HANGUP and ended.settled
    assert ended.minutes_left == 59 and ended.ended_at == 1060


def test_anyone_else_learns_nothing_and_nothing_is_hung_up() -> None:
    ledger, upstream = live_call()

    with pytest.raises(CallNotFound):
        ender(ledger, upstream).end_for_owner(user=BOB, call_id=CALL, deadline=deadline())

    assert upstream.hung_up == [] and ledger.writes == []


def test_a_repeated_hangup_repeats_the_answer_and_changes_nothing() -> None:
    ledger, upstream = live_call()
    first = ender(ledger, upstream).end_for_owner(user=ANN, call_id=CALL, deadline=deadline())
    writes = list(ledger.writes)

    again = ender(ledger, upstream).end_for_owner(user=ANN, call_id=CALL, deadline=deadline())

    assert (again.reason, again.settled) == (EndReason.HANGUP, False)
    assert again.ended_at == first.ended_at and ledger.writes == writes
    assert upstream.hung_up == [CALL]


def test_a_call_gone_upstream_is_settled_with_the_inferred_cause_not_the_owners() -> None:
    ledger, upstream = live_call()
    upstream.live.clear()  # the browser's peer closed first

    ended = ender(ledger, upstream, infer=EndReason.SPEND_LIMIT).end_for_owner(
        user=ANN, call_id=CALL, deadline=deadline()
    )

    assert ended.reason is EndReason.SPEND_LIMIT
    assert ledger.writes == ["claim hangup", "replace hangup -> spend_limit", "settle spend_limit"]
    assert ledger.records[CALL].reason == "spend_limit"


def test_a_failed_upstream_hangup_withdraws_the_claim_and_settles_nothing() -> None:
    ledger, upstream = live_call()
    upstream.answers = ["fails"]

    with pytest.raises(UpstreamRejected):
        ender(ledger, upstream).end_for_owner(user=ANN, call_id=CALL, deadline=deadline())

    assert ledger.writes == ["claim hangup", "replace hangup -> None"]
    record = ledger.records[CALL]
    assert record.reason is None and not record.done  # the call lives on, unsettled


def test_the_watcher_settling_during_the_owners_hangup_is_the_answer() -> None:
    """The race after a drop: the watcher recorded its cause and settled while the owner's
    hangup was on its way upstream. The owner hears the watcher's cause and the minutes left
    after its settle."""
    ledger, upstream = live_call()
    watcher = ender(ledger, upstream)
    ledger.time += 120

    def the_watcher_ends_it_first() -> None:
        watcher.end(user=ANN, call_id=CALL, reason=EndReason.POLICY, deadline=deadline())

    ledger.before["claim_end"] = the_watcher_ends_it_first

    ended = ender(ledger, upstream).end_for_owner(user=ANN, call_id=CALL, deadline=deadline())

    assert (ended.reason, ended.settled) == (EndReason.POLICY, False)
    assert ended.minutes_left == 58
    assert ledger.writes == ["claim policy", "settle policy"]


def test_the_owners_claim_stands_though_the_watcher_sees_the_line_close_first() -> None:
    """The owner's upstream hangup closes the sideband and the watcher ends the call as
    `closed` before the owner's settle: the owner claimed first, so `hangup` stands."""
    ledger, upstream = live_call()
    watcher = ender(ledger, upstream)
    upstream.then = lambda: watcher.end(
        user=ANN, call_id=CALL, reason=EndReason.CLOSED, deadline=deadline()
    )

    ended = ender(ledger, upstream).end_for_owner(user=ANN, call_id=CALL, deadline=deadline())

    assert ended.reason is EndReason.HANGUP
    assert ledger.records[CALL].reason == "hangup" and ledger.records[CALL].done
    assert ledger.writes.count("claim hangup") == 1 and "claim closed" not in ledger.writes


def test_a_ledger_that_cannot_record_the_claim_does_not_hold_the_hangup_up() -> None:
    ledger, upstream = live_call()
    ledger.failing.add("claim_end")

    ended = ender(ledger, upstream).end_for_owner(user=ANN, call_id=CALL, deadline=deadline())

    assert upstream.hung_up == [CALL] and ended.settled
    assert ended.reason is EndReason.HANGUP


def test_the_owners_hangup_deletes_the_schedule() -> None:
    ledger, upstream = live_call()
    schedules = FakeSchedules()

    CallEnder(ledger, upstream, schedules=schedules).end_for_owner(
        user=ANN, call_id=CALL, deadline=deadline()
    )

    assert schedules.deleted == [CALL]


# --- the server: the deadline, the watcher --------------------------------------------------


@pytest.mark.parametrize("reason", [r for r in EndReason if r is not EndReason.HANGUP])
def test_the_server_records_its_cause_before_it_hangs_up(reason: EndReason) -> None:
    ledger, upstream = live_call()
    seen: list[str | None] = []
    upstream.then = lambda: seen.append(ledger.records[CALL].reason)

    ended = ender(ledger, upstream).end(user=ANN, call_id=CALL, reason=reason, deadline=deadline())

    assert seen == [reason.value]  # the page, asking at the hangup, hears it
    assert ended.reason is reason and ended.settled


def test_the_server_hangs_up_though_the_ledger_cannot_be_read() -> None:
    ledger, upstream = live_call()
    ledger.failing.add("view")

    with pytest.raises(DependencyUnavailable):  # the settle's own read fails too
        ender(ledger, upstream).end(
            user=ANN, call_id=CALL, reason=EndReason.DEADLINE, deadline=deadline()
        )

    assert upstream.hung_up == [CALL]


def test_the_server_hangs_up_a_call_the_ledger_does_not_know() -> None:
    ledger, upstream = FakeLedger(), FakeUpstream(live={CALL})

    ended = ender(ledger, upstream).end(
        user=ANN, call_id=CALL, reason=EndReason.DEADLINE, deadline=deadline()
    )

    assert upstream.hung_up == [CALL]
    assert ended.call is None and not ended.settled


def test_a_server_end_of_a_settled_call_changes_nothing() -> None:
    ledger, upstream = live_call()
    ender(ledger, upstream).end_for_owner(user=ANN, call_id=CALL, deadline=deadline())
    writes = list(ledger.writes)

    ended = ender(ledger, upstream).end(
        user=ANN, call_id=CALL, reason=EndReason.DEADLINE, deadline=deadline()
    )

    assert (ended.reason, ended.settled) == (EndReason.HANGUP, False)
    assert ledger.writes == writes and upstream.hung_up == [CALL]


def test_a_server_end_whose_hangup_fails_settles_nothing_and_withdraws_its_cause() -> None:
    ledger, upstream = live_call()
    upstream.answers = ["fails"]

    with pytest.raises(UpstreamRejected):
        ender(ledger, upstream).end(
            user=ANN, call_id=CALL, reason=EndReason.SPEND_LIMIT, deadline=deadline()
        )

    record = ledger.records[CALL]
    assert not record.done and record.reason is None


def test_an_unknown_stored_cause_is_reported_as_closed() -> None:
    assert EndReason.read("meteor") is EndReason.CLOSED
    assert EndReason.read("policy") is EndReason.POLICY
