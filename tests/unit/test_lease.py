"""The watcher's lease (moto): one holder at a time, also when a hand-over's start event is
delivered twice; and the watcher as its handler runs it, around the lease and the sideband."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from token_vendor.core.ending import EndReason
from token_vendor.core.errors import DependencyUnavailable
from token_vendor.core.lease import LeaseStore
from token_vendor.watcher import app as watcher

from tests.support.aws import Aws
from tests.support.clock import Clock
from tests.support.env import TABLE
from tests.support.watch import (
    CALL,
    CONTEXT,
    NOW,
    Recorder,
    Scripted,
    Step,
    container,
    job,
    updated,
)


def handed_over(aws: Aws) -> LeaseStore:
    leases = LeaseStore(TABLE, aws.dynamodb)
    assert leases.acquire(CALL, "w_first", 30)
    assert leases.pass_to(CALL, "w_first", "w_named", 30)
    return leases


def test_two_starts_of_one_hand_over_leave_one_holder(aws: Aws) -> None:
    """Async invokes are at-least-once: the successor's start event may come twice. Each
    copy swaps the name for a fresh token of its own in one conditional write: one wins."""
    leases = handed_over(aws)
    gate = threading.Barrier(2)
    won: dict[str, bool] = {}

    def start(me: str) -> None:
        gate.wait()
        won[me] = leases.take_over(CALL, "w_named", me, 30)

    threads = [threading.Thread(target=start, args=(me,)) for me in ("w_a", "w_b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won.values()) == [False, True]
    winner = next(me for me, ok in won.items() if ok)
    state = leases.state(CALL)
    assert state.holder == winner and not state.attached and state.handovers == 1
    # The loser's name is gone: it cannot renew, mark attached or hand over either.
    assert not leases.renew(CALL, "w_named", 30)
    assert not leases.mark_attached(CALL, "w_named")
    assert not leases.take_over(CALL, "w_named", "w_c", 30)


def test_a_renewal_says_attached_again(aws: Aws) -> None:
    leases = LeaseStore(TABLE, aws.dynamodb)
    assert leases.acquire(CALL, "w_me", 30) and not leases.state(CALL).attached
    assert leases.renew(CALL, "w_me", 30) and leases.state(CALL).attached


# --- the handler's watch(), with a scripted sideband ---------------------------------------------


def test_a_duplicated_hand_over_start_steps_back_without_hanging_up(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    leases = handed_over(aws)
    recorder = Recorder()
    c = container(aws, leases, recorder)
    duplicate: list[dict[str, Any]] = []
    sidebands: list[Scripted] = []

    def second_start() -> None:  # the same event again, while the first copy watches
        duplicate.append(watcher.watch(job("w_named"), True, CONTEXT, c, recorder))

    def attach(*_: Any) -> Scripted:
        sidebands.append(Scripted(Clock(NOW), [updated(), second_start, updated()]))
        return sidebands[-1]

    monkeypatch.setattr(watcher, "attach", attach)
    first = watcher.watch(job("w_named"), True, CONTEXT, c, recorder)
    assert first["status"] == "ended"  # the script ran out: the sideband closed
    assert duplicate == [{"status": "not_holder", "call_id": "rtc_1"}]
    assert len(sidebands) == 1  # the duplicate never opened one
    assert recorder.ended == [(CALL, EndReason.CLOSED)]  # only the holder ended the call
    assert "DuplicateStarts" in recorder.names()


class FailingAttach:
    def __init__(self, leases: LeaseStore, error: Exception) -> None:
        self._leases = leases
        self.error = error

    def mark_attached(self, *_: Any) -> bool:
        raise self.error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._leases, name)


@pytest.mark.parametrize(
    "error",
    [DependencyUnavailable("lease", "DynamoDB: InternalServerError"), RuntimeError("a bug")],
)
def test_the_sideband_is_closed_when_marking_attached_fails(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    leases = FailingAttach(LeaseStore(TABLE, aws.dynamodb), error)
    recorder = Recorder()
    c = container(aws, leases, recorder)
    script: list[Step] = [updated()]
    sideband = Scripted(Clock(NOW), script)
    monkeypatch.setattr(watcher, "attach", lambda *_: sideband)
    if isinstance(error, DependencyUnavailable):
        # Transient: the watcher watches on (its renewals say attached again).
        assert watcher.watch(job("w_me"), False, CONTEXT, c, recorder)["status"] == "ended"
        assert ("WatcherFailures", 1, {"stage": "lease"}) in recorder.counts
    else:
        # A bug: counted, and the call it can no longer watch is ended (fail closed).
        result = watcher.watch(job("w_me"), False, CONTEXT, c, recorder)
        assert result["status"] == "failed" and result["ended"] is True
        assert ("WatcherFailures", 1, {"stage": "RuntimeError"}) in recorder.counts
        assert recorder.ended == [(CALL, EndReason.UNWATCHED)]
    assert sideband.closed
