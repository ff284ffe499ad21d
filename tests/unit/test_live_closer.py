"""Closing a GPT-Live session from a sideband of our own (watcher.closer), and the Live side of
the sideband adapter: its URL, and the audio copies it drops unparsed."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from token_vendor.core.deadline import Deadline
from token_vendor.core.errors import DependencyUnavailable
from token_vendor.core.ids import CallId, UserId
from token_vendor.core.pricing import DEFAULT_PRICES_FILE, live_usage_cost, load_prices
from token_vendor.core.spend import SpendLedger, SpendLimits
from token_vendor.watcher import app as watcher
from token_vendor.watcher.closer import LiveSessionCloser
from token_vendor.watcher.sideband import (
    Sideband,
    SidebandClosed,
    SidebandRefused,
    sideband_url,
)

from tests.support.aws import Aws
from tests.support.env import TABLE

CALL, USER = CallId("live_7"), UserId("owner")
PRICES = load_prices(DEFAULT_PRICES_FILE, "", [])
FINAL = {"seconds": 95, "active_seconds": 80, "paused_seconds": 15}


class Line:
    """A sideband that answers `session.close` with `then` (events, then the socket ends)."""

    def __init__(self, then: list[dict[str, Any]], *, send_fails: bool = False) -> None:
        self.then = then
        self.send_fails = send_fails
        self.sent: list[dict[str, Any]] = []
        self.queue: list[dict[str, Any]] = []
        self.closed = False

    def send(self, event: dict[str, Any]) -> None:
        if self.send_fails:
            raise SidebandClosed(None, "")
        self.sent.append(event)
        self.queue.extend(self.then)

    def recv(self, timeout: float) -> dict[str, Any] | None:
        if self.queue:
            return self.queue.pop(0)
        if self.then and not self.then[-1]:  # an empty event: the socket ends
            raise SidebandClosed(None, "")
        return None

    def close(self) -> None:
        self.closed = True


class Keys:
    def get(self) -> Any:
        return object()


def closer(aws: Aws, opened: Any) -> tuple[LiveSessionCloser, SpendLedger]:
    spend = SpendLedger(TABLE, SpendLimits(), aws.dynamodb)
    calls: list[dict[str, Any]] = []

    def open_sideband(base: str, keys: Any, call_id: str, **how: Any) -> Any:
        calls.append({"call_id": call_id} | how)
        if isinstance(opened, Exception):
            raise opened
        return opened

    made = LiveSessionCloser(
        "https://api.openai.com/v1",
        Keys(),  # type: ignore[arg-type]
        spend,
        PRICES,
        open_sideband=open_sideband,
    )
    made.opened = calls  # type: ignore[attr-defined]
    return made, spend


def test_a_close_sends_session_close_and_charges_the_final_usage(aws: Aws) -> None:
    session = {"id": CALL, "model": "gpt-live-1.1"}
    line = Line([{"type": "session.closed", "reason": "close_requested", "session": session,
                  "usage": FINAL}])  # fmt: skip
    close, spend = closer(aws, line)

    assert close.hang_up(CALL, Deadline(5), USER) is True

    assert line.sent == [{"type": "session.close"}] and line.closed
    (opened,) = close.opened  # type: ignore[attr-defined]
    assert opened["call_id"] == CALL and opened["family"] == "live" and opened["timeout"] <= 5
    price = PRICES.for_live("gpt-live-1.1")[0]
    assert spend.call_total(CALL) == live_usage_cost(FINAL, price)
    assert spend.today(USER).user_micros == live_usage_cost(FINAL, price)


def test_a_session_openai_no_longer_knows_was_over_already(aws: Aws) -> None:
    close, spend = closer(aws, SidebandRefused(404, "session_not_found"))
    assert close.hang_up(CALL, Deadline(5), USER) is False
    assert spend.call_total(CALL) == 0


@pytest.mark.parametrize(
    "opened",
    [
        SidebandRefused(500, "server_error"),
        SidebandRefused(None, "TimeoutError"),
        Line([], send_fails=True),  # the line ends before the close could be sent
        Line([]),  # no session.closed before the deadline
    ],
)
def test_a_close_not_known_to_have_worked_is_raised(aws: Aws, opened: Any) -> None:
    """The session may live on: the ender keeps its slot and tries again, never settles."""
    close, _ = closer(aws, opened)
    with pytest.raises(DependencyUnavailable):
        close.hang_up(CALL, Deadline(0.2), USER)


def test_a_line_that_ends_after_the_close_means_the_session_ended(aws: Aws) -> None:
    line = Line([{"type": "audio"}, {}])  # then the socket is cut, no session.closed
    close, spend = closer(aws, line)
    assert close.hang_up(CALL, Deadline(5), USER) is True
    assert spend.call_total(CALL) == 0  # nothing confirmed: the watcher's meter stands


# --- the sideband adapter ----------------------------------------------------------------


def test_the_live_sideband_is_the_sessions_attach_route() -> None:
    assert sideband_url("https://api.openai.com/v1", "live_a/b", "live") == (
        "wss://api.openai.com/v1/live/sessions/live_a%2Fb/attach"
    )
    assert (
        sideband_url("http://127.0.0.1:9/v1", "rtc_1")
        == "ws://127.0.0.1:9/v1/realtime?call_id=rtc_1"
    )


class Connection:
    def __init__(self, messages: list[str]) -> None:
        self.messages = messages

    def recv(self, timeout: float) -> str:
        return self.messages.pop(0)


def test_audio_copies_are_dropped_unparsed_and_every_other_event_is_read() -> None:
    audio = '{"type":"session.output_audio.delta","delta":"' + "A" * 100_000 + '"}'
    caller = '{ "type" : "session.input_audio.append", "audio": "AAAA"}'
    usage = json.dumps({"type": "session.usage.updated", "usage": {"seconds": 3}})
    # The type later in the object: parsed, and ignored by the watcher all the same.
    late = json.dumps({"delta": "AA", "type": "session.output_audio.delta"})
    text = json.dumps(
        {"type": "session.output_transcript.delta", "delta": "session.output_audio.delta"}
    )
    sideband = Sideband(Connection([audio, caller, usage, late, text]))  # type: ignore[arg-type]

    read = [sideband.recv(1) for _ in range(5)]

    assert read[0] == {"type": "audio"} and read[1] == {"type": "audio"}
    assert read[2] == json.loads(usage) and read[3] == json.loads(late)
    assert read[4] == json.loads(text)


# --- the watcher function's close action ----------------------------------------------------


class Metrics:
    def __init__(self) -> None:
        self.counts: list[tuple[str, dict[str, str]]] = []

    def count(self, name: str, value: float = 1, unit: str = "Count", **dims: str) -> None:
        self.counts.append((name, dims))


class Closing:
    def __init__(self, outcome: bool | Exception) -> None:
        self.outcome = outcome
        self.asked: list[tuple[str, float, str | None]] = []

    def hang_up(self, call_id: str, deadline: Deadline, user: str | None = None) -> bool:
        self.asked.append((call_id, deadline.remaining(), user))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


@pytest.mark.parametrize(
    ("outcome", "answer", "counted"),
    [
        (True, {"closed": True, "call_id": CALL}, []),
        (False, {"closed": False, "call_id": CALL}, []),
        (
            DependencyUnavailable("openai", "no session.closed in time", 2),
            {"status": "failed", "call_id": CALL},
            [("WatcherFailures", {"stage": "close"})],
        ),
        (
            RuntimeError("a bug"),
            {"status": "failed", "call_id": CALL},
            [("WatcherFailures", {"stage": "close"})],
        ),
    ],
)
def test_the_close_action_answers_closed_only_when_it_knows(
    monkeypatch: pytest.MonkeyPatch, outcome: Any, answer: dict[str, Any], counted: Any
) -> None:
    """Without `closed` the token function keeps the session's slot and tries again."""
    closing = Closing(outcome)
    metrics = Metrics()
    monkeypatch.setattr(watcher, "container", lambda log=None: SimpleNamespace(closer=closing))
    monkeypatch.setattr(watcher, "EmfMetrics", lambda: metrics)

    event = {"action": "close", "call_id": CALL, "user": USER, "seconds": 99}
    assert watcher.handler(event, None) == answer

    ((call_id, seconds, user),) = closing.asked
    assert call_id == CALL and user == USER and seconds <= 20  # the bound, whatever is asked
    assert metrics.counts == counted


@pytest.mark.parametrize("call_id", ["", "live 1", "a/b", 7, None])
def test_a_close_for_an_id_openai_never_gives_is_refused(
    monkeypatch: pytest.MonkeyPatch, call_id: Any
) -> None:
    metrics = Metrics()
    monkeypatch.setattr(watcher, "EmfMetrics", lambda: metrics)
    answer = watcher.handler({"action": "close", "call_id": call_id}, None)
    assert answer == {"status": "invalid", "field": "call_id"}
    assert metrics.counts == [("WatchEventsRefused", {})]
