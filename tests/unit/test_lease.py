"""The watcher's lease (moto): one holder at a time, also when a hand-over's start event is
delivered twice; and the watcher as its handler runs it, around the lease and the sideband."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from token_vendor import watcher
from token_vendor.errors import DependencyUnavailable
from token_vendor.lease import LeaseStore
from token_vendor.pricing import DEFAULT_PRICES_FILE, load_prices
from token_vendor.spend import SpendLedger, SpendLimits
from token_vendor.watch import Job

from tests.conftest import TABLE, Aws
from tests.unit.test_watch import SESSION, Clock, Recorder, Scripted, Step, updated


class Serialised:
    """moto in-process is not atomic across threads; DynamoDB applies one conditional write
    to an item at a time. This client does too, so threads can race as they would there."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def update_item(self, **request: Any) -> Any:
        with self._lock:
            return self._client.update_item(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def handed_over(aws: Aws) -> LeaseStore:
    leases = LeaseStore(TABLE, Serialised(aws.dynamodb))
    assert leases.acquire("rtc_1", "w_first", 30)
    assert leases.pass_to("rtc_1", "w_first", "w_named", 30)
    return leases


def test_two_starts_of_one_hand_over_leave_one_holder(aws: Aws) -> None:
    """Async invokes are at-least-once: the successor's start event may come twice. Each
    copy swaps the name for a fresh token of its own in one conditional write: one wins."""
    leases = handed_over(aws)
    gate = threading.Barrier(2)
    won: dict[str, bool] = {}

    def start(me: str) -> None:
        gate.wait()
        won[me] = leases.take_over("rtc_1", "w_named", me, 30)

    threads = [threading.Thread(target=start, args=(me,)) for me in ("w_a", "w_b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won.values()) == [False, True]
    winner = next(me for me, ok in won.items() if ok)
    state = leases.state("rtc_1")
    assert state.holder == winner and not state.attached and state.handovers == 1
    # The loser's name is gone: it cannot renew, mark attached or hand over either.
    assert not leases.renew("rtc_1", "w_named", 30)
    assert not leases.mark_attached("rtc_1", "w_named")
    assert not leases.take_over("rtc_1", "w_named", "w_c", 30)


def test_a_renewal_says_attached_again(aws: Aws) -> None:
    leases = LeaseStore(TABLE, aws.dynamodb)
    assert leases.acquire("rtc_1", "w_me", 30) and not leases.state("rtc_1").attached
    assert leases.renew("rtc_1", "w_me", 30) and leases.state("rtc_1").attached


# --- the handler's watch(), with a scripted sideband ---------------------------------------------


def container(aws: Aws, leases: Any, recorder: Recorder) -> Any:
    problems: list[str] = []
    settings = SimpleNamespace(
        lease_seconds=30.0,
        max_seconds=840.0,
        handover_seconds=30.0,
        margin_seconds=10.0,
        prices=load_prices(DEFAULT_PRICES_FILE, "", problems),
        openai_base_url="https://api.openai.com/v1",
    )
    return SimpleNamespace(
        settings=settings,
        leases=leases,
        spend=SpendLedger(TABLE, SpendLimits(), aws.dynamodb),
        keys=None,
        ender=recorder,
        lambda_client=None,
    )


CONTEXT = SimpleNamespace(
    get_remaining_time_in_millis=lambda: 900_000, invoked_function_arn="arn:aws:lambda:fn"
)


def job(token: str) -> Job:
    return Job("rtc_1", "alice", "assistant", SESSION, "restore", time.time() + 600, token)


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
        sidebands.append(Scripted(Clock(), [updated(), second_start, updated()]))
        return sidebands[-1]

    monkeypatch.setattr(watcher, "attach", attach)
    first = watcher.watch(job("w_named"), True, CONTEXT, c, recorder)
    assert first["status"] == "ended"  # the script ran out: the sideband closed
    assert duplicate == [{"status": "not_holder", "call_id": "rtc_1"}]
    assert len(sidebands) == 1  # the duplicate never opened one
    assert recorder.ended == [("rtc_1", "closed")]  # only the holder ended the call
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
    sideband = Scripted(Clock(), script)
    monkeypatch.setattr(watcher, "attach", lambda *_: sideband)
    if isinstance(error, DependencyUnavailable):
        # Transient: the watcher watches on (its renewals say attached again).
        assert watcher.watch(job("w_me"), False, CONTEXT, c, recorder)["status"] == "ended"
        assert ("WatcherFailures", 1, {"stage": "lease"}) in recorder.counts
    else:
        with pytest.raises(RuntimeError):
            watcher.watch(job("w_me"), False, CONTEXT, c, recorder)
    assert sideband.closed
