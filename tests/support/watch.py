"""The watch loop's surroundings for unit tests: a call and its session, a sideband that plays
a script, and a recorder standing in for the ender and the metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from token_vendor.core.controls import ControlReader
from token_vendor.core.deadline import Deadline
from token_vendor.core.ending import Ending, EndReason
from token_vendor.core.ids import CallId, UserId
from token_vendor.core.jobs import Job
from token_vendor.core.lease import LeaseStore
from token_vendor.core.pricing import DEFAULT_PRICES_FILE, load_prices
from token_vendor.core.spend import SpendLedger, SpendLimits
from token_vendor.watcher.live import LiveWatch
from token_vendor.watcher.realtime import RealtimeWatch
from token_vendor.watcher.settings import WatcherSettings
from token_vendor.watcher.sideband import SidebandClosed
from token_vendor.watcher.watch import Timing

from devstack.openai_schema import build_session
from tests.support.aws import Aws
from tests.support.clock import Clock
from tests.support.env import TABLE
from tests.support.realtime import usage

NOW = 1_800_000_000.0  # when the watched call starts: its clock begins here
CALL = CallId("rtc_1")
USER = UserId("alice")
SESSION = {
    "type": "realtime",
    "model": "gpt-realtime-2.1",
    "instructions": "Be brief.",
    "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}},
}
Step = dict[str, Any] | Callable[[], None] | None


class Scripted:
    """A sideband that plays a script: events, pauses (None) and actions; then it closes."""

    def __init__(self, clock: Clock, script: list[Step], close_code: int | None = 1000) -> None:
        self.clock = clock
        self.script = list(script)
        self.sent: list[dict[str, Any]] = []
        self.sent_at: list[float] = []
        self.closed = False
        self.close_code = close_code
        # What OpenAI answers our session.update with (None: the script says).
        self.echo: dict[str, Any] | None = None

    def recv(self, timeout: float) -> dict[str, Any] | None:
        while self.script:
            step = self.script.pop(0)
            if callable(step):
                step()
                continue
            if step is None:
                self.clock.now += timeout
            return step
        raise SidebandClosed(self.close_code, "")

    def send(self, event: dict[str, Any]) -> None:
        if self.closed:
            raise SidebandClosed(1000, "")
        self.sent.append(event)
        self.sent_at.append(self.clock.now)
        if self.echo is not None and event["type"] == "session.update":
            self.script.insert(0, self.echo)

    def close(self) -> None:
        self.closed = True


class Recorder:
    def __init__(self) -> None:
        self.counts: list[tuple[str, float, dict[str, str]]] = []
        self.ended: list[tuple[CallId, EndReason]] = []
        self.settled_only: list[bool] = []  # per end: the session was over upstream already
        self.claims: list[tuple[CallId, EndReason]] = []

    def count(self, name: str, value: float = 1, unit: str = "Count", **dims: str) -> None:
        self.counts.append((name, value, dims))

    def end(
        self,
        *,
        user: UserId,
        call_id: CallId,
        reason: EndReason,
        deadline: Deadline,
        family: str = "realtime",
        upstream_ended: bool = False,
    ) -> Ending:
        self.ended.append((call_id, reason))
        self.settled_only.append(upstream_ended)
        return Ending(None, reason, False, None, 0)

    def claim(
        self, *, user: UserId, call_id: CallId, reason: EndReason, deadline: Deadline
    ) -> None:
        self.claims.append((call_id, reason))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.counts]


def updated(**changes: Any) -> dict[str, Any]:
    """A session.updated as OpenAI sends it: the whole session, every default filled in."""
    return {"type": "session.updated", "session": build_session(SESSION) | changes}


def done(response_id: str, **tokens: int) -> dict[str, Any]:
    return {
        "type": "response.done",
        "event_id": "event_" + response_id,
        "response": {"id": response_id, "status": "completed", "usage": usage(**tokens)},
    }


def watcher(
    aws: Aws,
    clock: Clock,
    script: list[Step],
    *,
    limits: str = "",
    on_change: str = "restore",
    close_code: int | None = 1000,
) -> tuple[RealtimeWatch, Scripted, Recorder, LeaseStore]:
    recorder = Recorder()
    events = Scripted(clock, script, close_code)
    job = Job(CALL, USER, "assistant", SESSION, on_change, NOW + 600, "w_me")
    parts = _watch_parts(aws, clock, limits, job, events, recorder)
    return RealtimeWatch(**parts), events, recorder, parts["leases"]


def _watch_parts(
    aws: Aws, clock: Clock, limits: str, job: Job, events: Any, recorder: Recorder
) -> dict[str, Any]:
    """What every dialect's watch is built from: the shipped prices, moto's spend ledger
    under `limits`, the job's lease held, the recorder as ender and metrics."""
    problems: list[str] = []
    prices = load_prices(DEFAULT_PRICES_FILE, "", problems)
    spend = SpendLedger(TABLE, SpendLimits.parse(limits, problems), aws.dynamodb, clock=clock)
    assert problems == []
    leases = LeaseStore(TABLE, aws.dynamodb, clock=clock)
    assert leases.acquire(job.call_id, job.token, 30)
    return {
        "job": job,
        "events": events,
        "prices": prices,
        "meter": spend,
        "leases": leases,
        "ender": recorder,
        "metrics": recorder,
        "log": logging.getLogger("test"),
        "clock": clock,
    }


LIVE_CALL = CallId("live_1")
LIVE_SESSION = {
    "model": "gpt-live-1.1",
    "instructions": "Be brief.",
    "audio": {"output": {"voice": "marin"}},
    "store": False,
    "client": {"data_channel": {"allowed_client_events": ["session.input_audio.mute"]}},
    "delegation": {
        "type": "responses",
        "responses": {"model": "gpt-5-mini", "instructions": "Look things up.", "tools": []},
    },
}


class Answering(Scripted):
    """A scripted sideband that also answers what the watcher sends: `answers[type]` builds
    the events that follow one (at the moment it is sent), played before the rest."""

    def __init__(
        self,
        clock: Clock,
        script: list[Step],
        close_code: int | None = None,
        answers: dict[str, Callable[[dict[str, Any]], list[Step]]] | None = None,
    ) -> None:
        super().__init__(clock, script, close_code)
        self.answers = answers or {}

    def send(self, event: dict[str, Any]) -> None:
        super().send(event)
        if (answer := self.answers.get(event["type"])) is not None:
            self.script[0:0] = answer(event)


def live_watcher(
    aws: Aws,
    clock: Clock,
    script: list[Step],
    *,
    limits: str = "",
    on_change: str = "restore",
    close_code: int | None = None,
    reopen: Callable[[], Any] | None = None,
    answers: dict[str, Callable[[dict[str, Any]], list[Step]]] | None = None,
) -> tuple[LiveWatch, Answering, Recorder, SpendLedger]:
    """A GPT-Live session's watch over a scripted sideband, charging moto's spend ledger."""
    recorder = Recorder()
    events = Answering(clock, script, close_code, answers)
    job = Job(
        LIVE_CALL, USER, "live-assistant", LIVE_SESSION, on_change, NOW + 600, "w_me", 0, "live"
    )
    parts = _watch_parts(aws, clock, limits, job, events, recorder)
    return LiveWatch(**parts, reopen=reopen), events, recorder, parts["meter"]


def timing(stop_in: float = 10_000, hard_in: float = 20_000) -> Timing:
    return Timing(stop_at=NOW + stop_in, hard_stop=NOW + hard_in, lease_seconds=30)


def never() -> str | None:
    raise AssertionError("no hand-over expected")


def container(aws: Aws, leases: Any, recorder: Recorder, **env: str) -> Any:
    settings = WatcherSettings.from_env(
        {"OPENAI_SECRET_ID": "k", "QUOTA_TABLE": TABLE, "WATCHER_LEASE_SECONDS": "30"} | env
    )
    return SimpleNamespace(
        settings=settings,
        leases=leases,
        spend=SpendLedger(TABLE, SpendLimits(), aws.dynamodb),
        keys=None,
        ender=recorder,
        lambda_client=None,
        controls=ControlReader(TABLE, aws.dynamodb),  # the operator's block (watcher.controls)
    )


CONTEXT = SimpleNamespace(
    get_remaining_time_in_millis=lambda: 900_000, invoked_function_arn="arn:aws:lambda:fn"
)


def job(token: str) -> Job:
    return Job(CALL, USER, "assistant", SESSION, "restore", time.time() + 600, token)
