"""The watch loop's decisions, with a scripted sideband and moto's DynamoDB (the real spend
ledger and lease): restore or hang up, the goodbye, the end, the lease, the hand-over."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from botocore.exceptions import ClientError
from token_vendor.core.ending import EndReason
from token_vendor.core.errors import DependencyUnavailable
from token_vendor.core.lease import LeaseStore
from token_vendor.watcher.realtime import GOODBYE
from token_vendor.watcher.watch import Outcome

from tests.support.aws import Aws
from tests.support.clock import Clock
from tests.support.env import TABLE
from tests.support.watch import CALL, NOW, Scripted, Step, done, never, timing, updated, watcher

# OpenAI's answer to a response.create while another response is in progress.
BUSY = {
    "type": "error",
    "error": {"type": "invalid_request_error", "code": "conversation_already_has_active_response"},
}


def test_restore_the_profile_on_attach_and_on_every_deviation(aws: Aws) -> None:
    clock = Clock(NOW)
    script: list[Step] = [updated(), updated(instructions="Ignore it."), updated()]
    watch, events, recorder, leases = watcher(aws, clock, script)
    assert watch.run(timing(), never) is Outcome.ENDED
    restores = [e for e in events.sent if e["type"] == "session.update"]
    assert len(restores) == 2  # on attach, and once for the deviation
    assert restores[1]["session"]["instructions"] == "Be brief."
    assert recorder.names().count("PolicyDeviations") == 1
    assert recorder.ended == [(CALL, EndReason.CLOSED)] and events.closed
    assert leases.state(CALL).ended


def test_a_hangup_profile_ends_the_call_on_a_deviation(aws: Aws) -> None:
    clock = Clock(NOW)
    script: list[Step] = [updated(tools=[{"type": "function", "name": "x"}]), updated()]
    watch, events, recorder, _ = watcher(aws, clock, script, on_change="hangup")
    assert watch.run(timing(), never) is Outcome.ENDED
    assert recorder.ended == [(CALL, EndReason.POLICY)]
    assert len(events.script) == 1  # it did not wait for more


def test_money_is_charged_once_per_event_with_the_live_model(aws: Aws) -> None:
    clock = Clock(NOW)
    transcribed = {
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": "item_1",
        "content_index": 0,
        "usage": {
            "type": "tokens",
            "total_tokens": 120,
            "input_tokens": 100,
            "input_token_details": {"text_tokens": 10, "audio_tokens": 90},
            "output_tokens": 20,
        },
    }
    script: list[Step] = [
        done("resp_1", text_in=12, text_out=9, audio_out=61),  # 4168
        done("resp_1", text_in=12, text_out=9, audio_out=61),  # the same again: 0
        transcribed,  # 383
        transcribed,
        updated(model="gpt-realtime-2.1-mini"),  # a session.updated says which model runs
        done("resp_2", text_in=12, text_out=9, audio_out=61),  # 1249 on the mini model
    ]
    watch, _, recorder, _ = watcher(aws, clock, script)
    watch.run(timing(), never)
    assert watch.charged_micros == 4168 + 383 + 1249
    spend = [(value, dims) for name, value, dims in recorder.counts if name == "SpendMicroUSD"]
    assert spend == [
        (4168, {"model": "gpt-realtime-2.1", "profile": "assistant"}),
        (383, {"model": "gpt-4o-mini-transcribe", "profile": "assistant"}),
        (1249, {"model": "gpt-realtime-2.1-mini", "profile": "assistant"}),
    ]


def test_the_budget_asks_for_a_goodbye_then_hangs_up(aws: Aws) -> None:
    clock = Clock(NOW)
    script: list[Step] = [
        done("resp_1", audio_out=2_000),  # 0.128 USD of 1.00
        done("resp_2", audio_out=14_000),  # 1.024: over; goodbye asked
        {"type": "response.created", "response": {"id": "resp_3"}},
        done("resp_3", audio_out=100),  # the goodbye said: hang up
        done("resp_4", audio_out=100),
    ]
    watch, events, recorder, _ = watcher(aws, clock, script, limits="usd/day=1.00")
    assert watch.run(timing(), never) is Outcome.ENDED
    goodbyes = [e for e in events.sent if e["type"] == "response.create"]
    assert goodbyes == [{"type": "response.create", "response": {"instructions": GOODBYE}}]
    assert recorder.ended == [(CALL, EndReason.SPEND_LIMIT)]
    assert "BudgetHangups" in recorder.names()
    assert watch.charged_micros == 128_000 + 896_000 + 6_400  # resp_4 never came
    assert len(events.script) == 1


def test_the_goodbye_is_asked_before_a_response_like_the_dearest_would_cross(aws: Aws) -> None:
    clock = Clock(NOW)
    script: list[Step] = [
        done("resp_1", audio_out=5_000),  # 0.32 spent, 0.68 left; dearest 0.32
        done("resp_2", audio_out=6_000),  # 0.704 spent, 0.296 left < dearest 0.384
        done("resp_3", audio_out=100),
    ]
    watch, events, recorder, _ = watcher(aws, clock, script, limits="usd/day=1.00")
    watch.run(timing(), never)
    assert [e["type"] for e in events.sent].count("response.create") == 1
    assert recorder.ended == [(CALL, EndReason.SPEND_LIMIT)]


def test_a_goodbye_refused_while_the_model_talks_is_asked_again(aws: Aws) -> None:
    clock = Clock(NOW)
    script: list[Step] = [
        done("resp_1", audio_out=20_000),  # over at once: goodbye asked
        BUSY,  # the caller's own response is still running
        done("resp_2", audio_out=100),  # that one ends: ask again
        done("resp_3", audio_out=100),  # the goodbye: hang up
    ]
    watch, events, recorder, _ = watcher(aws, clock, script, limits="usd/day=1.00")
    watch.run(timing(), never)
    assert [e["type"] for e in events.sent].count("response.create") == 2
    assert recorder.ended == [(CALL, EndReason.SPEND_LIMIT)]


def test_a_caller_who_keeps_the_model_busy_gets_no_goodbye_but_the_call_ends(aws: Aws) -> None:
    clock = Clock(NOW)
    script: list[Step] = [done("resp_1", audio_out=20_000)]
    for turn in range(2, 8):
        script += [BUSY, done(f"resp_{turn}", audio_out=100)]
    watch, events, recorder, _ = watcher(aws, clock, script, limits="usd/day=1.00")
    watch.run(timing(), never)
    assert [e["type"] for e in events.sent].count("response.create") == 3
    assert recorder.ended == [(CALL, EndReason.SPEND_LIMIT)]
    assert len(events.script) == 6  # resp_4 ended it: three (busy, done) pairs left


def test_a_goodbye_that_never_ends_is_cut_after_the_grace(aws: Aws) -> None:
    clock = Clock(NOW)
    script: list[Step] = [done("resp_1", audio_out=20_000), *[None] * 40, done("resp_x")]
    watch, _, recorder, _ = watcher(aws, clock, script, limits="usd/day=1.00")
    watch.run(timing(), never)
    assert recorder.ended == [(CALL, EndReason.SPEND_LIMIT)]
    assert clock.now - NOW < 20


def test_the_session_cap_and_a_drop_both_end_the_call(aws: Aws) -> None:
    for code, reason in ((1001, EndReason.SESSION_EXPIRED), (None, EndReason.CLOSED)):
        clock = Clock(NOW)
        expired = {
            "type": "error",
            "error": {"type": "invalid_request_error", "code": "session_expired"},
        }
        watch, _, recorder, _ = watcher(aws, clock, [expired], close_code=code)
        assert watch.run(timing(), never) is Outcome.ENDED
        assert recorder.ended == [(CALL, reason)]
        aws.dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": "watch#rtc_1"}})


def test_the_deadline_is_enforced_by_the_watcher_too(aws: Aws) -> None:
    clock = Clock(NOW)
    script: list[Step] = [None] * 2000
    watch, _, recorder, _ = watcher(aws, clock, script)
    assert watch.run(timing(), never) is Outcome.ENDED
    assert recorder.ended == [(CALL, EndReason.DEADLINE)]
    assert NOW + 600 <= clock.now <= NOW + 601


def test_a_watcher_that_loses_its_lease_steps_back_without_hanging_up(aws: Aws) -> None:
    clock = Clock(NOW)
    script: list[Step] = [None] * 100
    watch, events, recorder, leases = watcher(aws, clock, script)
    # Another watcher took the lease after this one stopped renewing for too long.
    clock.now += 31
    assert leases.acquire(CALL, "w_other", 30)
    assert watch.run(timing(), never) is Outcome.LOST_LEASE
    assert recorder.ended == [] and events.closed
    assert leases.state(CALL).holder == "w_other"


def test_a_hand_over_reads_on_until_the_successor_attached(aws: Aws) -> None:
    clock = Clock(NOW)
    successor_attached: list[bool] = []

    def successor_attaches() -> None:
        assert leases.take_over(CALL, "w_next", "w_fresh", 30)
        assert leases.mark_attached(CALL, "w_fresh")
        successor_attached.append(True)

    script: list[Step] = [
        None,
        done("resp_1", audio_out=10),  # before the successor attached: this one charges
        successor_attaches,
        done("resp_2", audio_out=10),  # in flight at the attach: charged here too (once)
        None,
        None,
        done("resp_3", audio_out=10),  # after the drain: the successor's, not this one's
    ]

    def hand_over() -> str:
        assert leases.pass_to(CALL, "w_me", "w_next", 30)
        return "w_next"

    watch, events, recorder, leases = watcher(aws, clock, script)
    assert watch.run(timing(stop_in=0, hard_in=100), hand_over) is Outcome.HANDED_OVER
    assert successor_attached and events.closed and recorder.ended == []
    assert watch.charged_micros == 2 * 640
    state = leases.state(CALL)
    assert state.holder == "w_fresh" and state.handovers == 1 and not state.ended


def test_no_successor_keeps_watching_until_the_hard_stop(aws: Aws) -> None:
    clock = Clock(NOW)
    watch, events, recorder, _ = watcher(aws, clock, [None] * 1000)
    asked: list[bool] = []

    def refuse() -> str | None:
        asked.append(True)
        return None  # no successor could be started

    outcome = watch.run(timing(stop_in=1, hard_in=5), refuse)
    assert outcome is Outcome.OUT_OF_TIME
    assert asked == [True] and events.closed and recorder.ended == []
    assert NOW + 5 <= clock.now < NOW + 6


def test_a_ledger_failure_is_counted_and_the_call_goes_on(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(NOW)
    watch, _, recorder, _ = watcher(aws, clock, [done("resp_1", audio_out=10), updated()])

    def fail(**_: Any) -> Any:
        raise DependencyUnavailable("spend_ledger", "DynamoDB: InternalServerError")

    monkeypatch.setattr(watch.meter, "charge", fail)
    assert watch.run(timing(), never) is Outcome.ENDED
    assert ("WatcherFailures", 1, {"stage": "charge"}) in recorder.counts
    assert recorder.ended == [(CALL, EndReason.CLOSED)]


def test_a_charge_whose_day_was_not_read_is_counted_and_the_budget_checked_next(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The charge went in but reading the day's totals after it failed: the money is spent
    (not kept to retry, which the meter would refuse as already charged), and the budget is
    checked at the next charge."""
    clock = Clock(NOW)
    script: list[Step] = [
        done("resp_1", audio_out=20_000),  # 1.28 USD of 1.00: over, but the day is not read
        done("resp_2", audio_out=100),  # read: over, goodbye asked
        done("resp_3", audio_out=100),  # the goodbye said: hang up
    ]
    watch, events, recorder, _ = watcher(aws, clock, script, limits="usd/day=1.00")
    read = aws.dynamodb.batch_get_item
    failures = [1]

    def flaky_read(**request: Any) -> Any:
        if failures[0]:
            failures[0] -= 1
            raise ClientError({"Error": {"Code": "InternalServerError"}}, "BatchGetItem")
        return read(**request)

    monkeypatch.setattr(aws.dynamodb, "batch_get_item", flaky_read)
    assert watch.run(timing(), never) is Outcome.ENDED
    assert failures == [0] and not watch.unrecorded
    assert watch.charged_micros == 1_280_000 + 2 * 6_400
    spend = [value for name, value, _ in recorder.counts if name == "SpendMicroUSD"]
    assert spend == [1_280_000, 6_400, 6_400]
    assert "WatcherFailures" not in recorder.names()
    assert "UnrecordedMicroUSD" not in recorder.names()
    assert [e["type"] for e in events.sent].count("response.create") == 1
    assert recorder.ended == [(CALL, EndReason.SPEND_LIMIT)]


# --- DynamoDB failures: transient, and the sideband always closed --------------------------------


class FlakyLeases:
    """The real lease store, but the named operations fail `failures[name]` times first (or
    for ever with -1), as DynamoDB does when it throttles or is briefly unreachable."""

    def __init__(self, leases: LeaseStore, **failures: int) -> None:
        self._leases = leases
        self.failures = failures
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._leases, name)

        def call(*args: Any) -> Any:
            self.calls.append(name)
            left = self.failures.get(name, 0)
            if left:
                self.failures[name] = left - 1
                raise DependencyUnavailable("lease", "DynamoDB: ProvisionedThroughputExceeded")
            return real(*args)

        return call


def test_a_failed_renewal_is_tried_again_at_the_next_tick(aws: Aws) -> None:
    clock = Clock(NOW)
    watch, events, recorder, leases = watcher(aws, clock, [None] * 60)
    watch.leases = flaky = FlakyLeases(leases, renew=2)
    assert watch.run(timing(), never) is Outcome.ENDED  # the script ran out: closed
    assert flaky.calls.count("renew") >= 3 and flaky.failures["renew"] == 0
    assert recorder.counts.count(("WatcherFailures", 1, {"stage": "lease"})) == 2
    assert recorder.ended == [(CALL, EndReason.CLOSED)] and events.closed
    assert leases.state(CALL).attached  # a renewal went through (and says attached)


def test_renewals_failing_until_the_lease_runs_out_step_back_and_close(aws: Aws) -> None:
    clock = Clock(NOW)
    watch, events, recorder, leases = watcher(aws, clock, [None] * 200)
    watch.leases = FlakyLeases(leases, renew=-1)
    assert watch.run(timing(), never) is Outcome.LOST_LEASE
    assert NOW + 30 <= clock.now < NOW + 31  # the lease (30 s) would have run out
    assert recorder.ended == [] and events.closed  # no hangup: the deadline still ends it


def test_the_sideband_is_closed_whatever_leaves_run(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(NOW)
    watch, events, _, _ = watcher(aws, clock, [done("resp_1", audio_out=10)])

    def broken(**_: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(watch.meter, "charge", broken)
    with pytest.raises(RuntimeError):
        watch.run(timing(), never)
    assert events.closed


def test_a_lease_read_failing_during_a_hand_over_is_asked_again(aws: Aws) -> None:
    clock = Clock(NOW)

    def successor_attaches() -> None:
        assert leases.take_over(CALL, "w_next", "w_fresh", 30)
        assert leases.mark_attached(CALL, "w_fresh")

    script: list[Step] = [None, successor_attaches, None, None, None]

    def hand_over() -> str:
        assert leases.pass_to(CALL, "w_me", "w_next", 30)
        return "w_next"

    watch, events, recorder, leases = watcher(aws, clock, script)
    watch.leases = FlakyLeases(leases, state=2)
    assert watch.run(timing(stop_in=0, hard_in=100), hand_over) is Outcome.HANDED_OVER
    assert events.closed and recorder.ended == []


def test_a_hand_over_dynamodb_did_not_take_is_tried_again(aws: Aws) -> None:
    clock = Clock(NOW)
    tries: list[float] = []

    def hand_over() -> str | None:
        tries.append(clock.now)
        if len(tries) < 3:
            raise DependencyUnavailable("lease", "DynamoDB: InternalServerError")
        return None

    watch, _, recorder, _ = watcher(aws, clock, [None] * 30)
    watch.run(timing(stop_in=1, hard_in=100), hand_over)
    assert len(tries) == 3 and tries[1] - tries[0] >= 1
    assert recorder.counts.count(("WatcherFailures", 1, {"stage": "handover"})) == 2


def test_a_charge_dynamodb_did_not_take_is_kept_and_recorded_later(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(NOW)
    script: list[Step] = [done("resp_1", audio_out=10), None, None, None, None]
    watch, _, recorder, _ = watcher(aws, clock, script)
    real = watch.meter.charge
    failures = [2]

    def flaky(**kwargs: Any) -> Any:
        if failures[0]:
            failures[0] -= 1
            raise DependencyUnavailable("spend_ledger", "DynamoDB: TransactionCanceledException")
        return real(**kwargs)

    monkeypatch.setattr(watch.meter, "charge", flaky)
    watch.run(timing(), never)
    assert watch.charged_micros == 640 and not watch.unrecorded
    assert recorder.counts.count(("WatcherFailures", 1, {"stage": "charge"})) == 1
    assert "UnrecordedMicroUSD" not in recorder.names()


def test_a_charge_never_recorded_is_reported_with_its_amount(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(NOW)
    watch, _, recorder, _ = watcher(aws, clock, [done("resp_1", audio_out=10), None])

    def fail(**_: Any) -> Any:
        raise DependencyUnavailable("spend_ledger", "DynamoDB: TransactionCanceledException")

    monkeypatch.setattr(watch.meter, "charge", fail)
    watch.run(timing(), never)
    assert ("UnrecordedMicroUSD", 640, {"profile": "assistant"}) in recorder.counts


# --- restores that do not take ------------------------------------------------------------------


def restores(events: Scripted) -> list[tuple[float, dict[str, Any]]]:
    return [
        (at, e["session"])
        for at, e in zip(events.sent_at, events.sent, strict=True)
        if e["type"] == "session.update"
    ]


def test_a_restore_that_does_not_take_is_paced_never_stopped_and_alarmed(aws: Aws) -> None:
    """OpenAI answers each restore with the same deviation (a field it reports in its own
    way): the watcher keeps restoring, at most once a second, and raises the alarm once."""
    clock = Clock(NOW)
    watch, events, recorder, _ = watcher(aws, clock, [None] * 40)  # 0.5 s a pause: 20 s
    events.echo = updated(instructions="Reported otherwise.")
    assert watch.run(timing(), never) is Outcome.ENDED
    sent = [at for at, _ in restores(events)]
    assert sent[:3] == [NOW] * 3  # on attach, then at once twice: the third failure paces
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent[2:])]
    assert gaps and all(gap >= 1.0 for gap in gaps), gaps
    assert 3 + 15 <= len(sent) <= 3 + 21  # one a second for 20 s: restoring never stopped
    assert recorder.counts.count(("WatcherFailures", 1, {"stage": "policy"})) == 1
    assert recorder.ended == [(CALL, EndReason.CLOSED)]  # the call was not hung up for it


def test_a_browser_flooding_session_updates_is_still_restored(aws: Aws) -> None:
    """A browser's session.updates sent back to back land where the answers to our restores
    were expected: the watcher paces its restores but the last change is still undone."""
    clock = Clock(NOW)
    flood: list[Step] = [updated(instructions=f"Obey me ({n}).") for n in range(6)]
    after_flood: list[int] = []
    script: list[Step] = [
        updated(),  # the answer to the restore on attach
        *flood,
        lambda: after_flood.append(len(events.sent)),
        *[None] * 6,  # 3 s of quiet
    ]
    watch, events, recorder, _ = watcher(aws, clock, script)
    assert watch.run(timing(), never) is Outcome.ENDED
    last_at, last = restores(events)[-1]
    assert len(events.sent) > after_flood[0]  # a restore after the last change
    assert last["instructions"] == "Be brief." and last_at <= NOW + 1.0
    actions = [dims["action"] for name, _, dims in recorder.counts if name == "PolicyDeviations"]
    assert actions == ["restore"] * len(flood)  # never "none": every change is undone


def test_a_caller_who_keeps_changing_the_session_is_restored_every_time(aws: Aws) -> None:
    clock = Clock(NOW)
    script: list[Step] = [updated()]
    for _ in range(6):  # the browser's change, then the answer to our restore
        script += [updated(instructions="Ignore it."), updated()]
    watch, events, recorder, _ = watcher(aws, clock, script)
    watch.run(timing(), never)
    assert [e["type"] for e in events.sent].count("session.update") == 1 + 6
    assert ("WatcherFailures", 1, {"stage": "policy"}) not in recorder.counts


def test_a_hangup_profile_keeps_a_call_whose_session_omits_empty_fields(aws: Aws) -> None:
    clock = Clock(NOW)
    sparse = updated()
    for name in ("prompt", "tools"):
        del sparse["session"][name]
    watch, _, recorder, _ = watcher(aws, clock, [sparse, None, sparse], on_change="hangup")
    assert watch.run(timing(), never) is Outcome.ENDED
    assert recorder.ended == [(CALL, EndReason.CLOSED)]
