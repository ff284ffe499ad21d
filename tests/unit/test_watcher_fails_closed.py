"""No call runs unwatched for long, and nothing is settled that did not end: the watcher's
fail-closed paths, each with the failure planted (moto for the lease and the spend ledger, a
scripted sideband, a recording ender)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from token_vendor.core.ending import Ending, EndReason
from token_vendor.core.errors import UpstreamRejected
from token_vendor.core.jobs import BadEvent, parse_job
from token_vendor.core.lease import LeaseStore
from token_vendor.watcher import app as watcher
from token_vendor.watcher.sideband import Sideband, SidebandRefused
from token_vendor.watcher.watch import Outcome

from tests.support.aws import Aws
from tests.support.clock import Clock
from tests.support.env import TABLE
from tests.support.logs import LogCapture
from tests.support.watch import (
    CALL,
    CONTEXT,
    NOW,
    Recorder,
    Step,
    container,
    done,
    job,
    never,
    timing,
    updated,
)
from tests.support.watch import watcher as watch_of

EVENT = {
    "action": "watch",
    "user": "u",
    "profile": "assistant",
    "session": {"type": "realtime"},
    "on_session_change": "restore",
    "ends_at": 2_000_000_000,
}


@pytest.mark.parametrize("call_id", ["rtc_abc", "call_9-x", "A" * 128])
def test_a_watch_event_takes_every_call_id_the_token_function_takes(call_id: str) -> None:
    job, handed = parse_job(EVENT | {"call_id": call_id})
    assert job.call_id == call_id and not handed


@pytest.mark.parametrize("call_id", ["", "rtc 1", "rtc/1", "A" * 129, 7])
def test_a_watch_event_with_an_id_openai_never_gives_is_refused(call_id: Any) -> None:
    with pytest.raises(BadEvent, match="call_id"):
        parse_job(EVENT | {"call_id": call_id})


def test_a_refused_watch_event_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    monkeypatch.setattr(watcher, "EmfMetrics", lambda: recorder)

    assert watcher.handler(EVENT | {"call_id": "rtc 1"}, CONTEXT)["status"] == "invalid"
    assert recorder.names() == ["WatchEventsRefused"]


class Refusing:
    """Sideband.open, refused with `status` every time; counts the tries."""

    def __init__(self, status: int | None) -> None:
        self.status = status
        self.tries = 0

    def __call__(self, *_: Any, **__: Any) -> Sideband:
        self.tries += 1
        raise SidebandRefused(self.status, "call_id_not_found")


@pytest.mark.parametrize("status", [404, None])
def test_a_watcher_that_cannot_attach_in_its_window_ends_the_call_as_unwatched(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, status: int | None
) -> None:
    leases = LeaseStore(TABLE, aws.dynamodb)
    recorder = Recorder()
    c = container(aws, leases, recorder, WATCHER_ATTACH_SECONDS="1")
    c.keys = SimpleNamespace(get=lambda: None, refresh=lambda: None)
    refusing = Refusing(status)
    monkeypatch.setattr(Sideband, "open", refusing)

    result = watcher.watch(job("w_me"), False, CONTEXT, c, recorder)

    assert result == {"status": "not_attached", "call_id": CALL, "ended": True}
    assert refusing.tries >= 3  # backing off 0.25, 0.5 s... inside the one-second window
    assert recorder.ended == [(CALL, EndReason.UNWATCHED)]
    assert ("CallsUnwatched", 1, {"outcome": "ended"}) in recorder.counts
    assert leases.state(CALL).ended


def test_an_operator_may_let_unwatched_calls_run_counted(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    leases = LeaseStore(TABLE, aws.dynamodb)
    recorder = Recorder()
    c = container(aws, leases, recorder, WATCHER_ATTACH_SECONDS="1", UNWATCHED_CALLS="allow")
    c.keys = SimpleNamespace(get=lambda: None, refresh=lambda: None)
    monkeypatch.setattr(Sideband, "open", Refusing(404))

    result = watcher.watch(job("w_me"), False, CONTEXT, c, recorder)

    assert result == {"status": "not_attached", "call_id": CALL}
    assert recorder.ended == []
    assert ("CallsUnwatched", 1, {"outcome": "allowed"}) in recorder.counts
    assert not leases.state(CALL).ended  # another start may still take it


def test_deeply_nested_json_on_the_sideband_is_an_invalid_event_not_a_crash() -> None:
    class Connection:
        def recv(self, timeout: float) -> str:
            return "[" * 100_000

    assert Sideband(Connection()).recv(1.0) == {"type": "invalid"}  # type: ignore[arg-type]


class FailingEnder(Recorder):
    """OpenAI's hangup fails `failures` times, then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.tries = 0

    def end(self, **how: Any) -> Ending:
        self.tries += 1
        if self.tries <= self.failures:
            raise UpstreamRejected("openai", "HTTP 500 (server_error)", 500)
        return super().end(**how)


def test_a_call_whose_hangup_failed_is_not_settled_and_is_metered_until_it_ends(
    aws: Aws,
) -> None:
    """The budget's goodbye is said, the hangup fails twice: the lease stays, the responses
    that still come are charged, and the end is tried again (1 s, then 2 s) until it works."""
    clock = Clock(NOW)
    ender = FailingEnder(failures=2)
    script: list[Step] = [
        done("resp_1", audio_out=16_000),  # 1.024 USD of 1.00: goodbye asked
        done("resp_2", audio_out=100),  # the goodbye said: hang up (fails)
        done("resp_3", audio_out=100),  # the call lives on: still metered
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ]
    watch, _, _, leases = watch_of(aws, clock, script, limits="usd/day=1.00")
    watch.ender = ender
    watch.metrics = ender
    watch.sleep = lambda seconds: setattr(clock, "now", clock.now + seconds)

    outcome = watch.run(timing(), never)

    assert outcome is Outcome.ENDED and ender.tries == 3
    assert ender.ended == [(CALL, EndReason.SPEND_LIMIT)]
    assert ender.names().count("WatcherFailures") == 2
    assert watch.charged_micros == 1_024_000 + 6_400 + 6_400  # resp_3 too
    assert leases.state(CALL).ended  # only once the end went through


def test_the_watcher_says_it_is_attached_only_once_the_profile_is_on_its_way(
    aws: Aws,
) -> None:
    clock = Clock(NOW)
    watch, events, _, _ = watch_of(aws, clock, [updated()])
    seen: list[int] = []
    watch.in_force = lambda: seen.append(len(events.sent))

    watch.run(timing(), never)

    assert seen == [1] and events.sent[0]["type"] == "session.update"


def test_a_watcher_whose_first_restore_finds_the_line_closed_never_says_attached(
    aws: Aws,
) -> None:
    clock = Clock(NOW)
    watch, events, recorder, _ = watch_of(aws, clock, [])
    events.closed = True
    watch.in_force = lambda: pytest.fail("attached without a restore")

    assert watch.run(timing(), never) is Outcome.ENDED
    assert recorder.ended == [(CALL, EndReason.CLOSED)]
    assert json.dumps(events.sent) == "[]"


class Deep:
    """A sideband whose reading hits a bug deep down: two frames calling each other."""

    def recv(self, timeout: float) -> dict[str, Any] | None:
        return self.other_half(timeout)

    def other_half(self, timeout: float) -> dict[str, Any] | None:
        return self.recv(timeout)

    def send(self, event: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


def test_a_bug_deep_in_a_watch_logs_a_bounded_trace_and_ends_the_call(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    leases = LeaseStore(TABLE, aws.dynamodb)
    recorder = Recorder()
    c = container(aws, leases, recorder)
    c.keys = SimpleNamespace(get=lambda: None, refresh=lambda: None)
    monkeypatch.setattr(Sideband, "open", lambda *_, **__: Deep())

    logs = LogCapture(watcher)
    try:
        result = watcher.watch(job("w_me"), False, CONTEXT, c, recorder)
    finally:
        logs.close()

    assert result["status"] == "failed" and result["ended"] is True
    assert recorder.ended == [(CALL, EndReason.UNWATCHED)]
    out = logs.text
    # The whole traceback would be a thousand frames on one line.
    assert len(out) < 8_000
    [record] = [json.loads(line) for line in out.splitlines() if '"watcher failed"' in line]
    assert record["error"] == "RecursionError" and "in other_half" in record["trace"]
