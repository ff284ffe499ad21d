"""Watching one call through its sideband: hold the policy, meter the money, enforce the
budget, notice the end, hand over in time. Knows nothing of Lambda or HTTP: the sideband,
the ledgers and the hangup come in as adapters.

- policy: every `session.updated` is compared with the fields the profile fixes (guard.py);
  a deviation is restored at once with a `session.update`, or ends the call, as the profile
  says. Only the names of the fields are logged, never their text.
- money: every `response.done` usage and every input-transcription usage is priced and added
  to the user's day once (the event's id is the ledger's key), as it arrives.
- budget: when today's spend reaches the limit, or the next response like the dearest one
  so far would cross it, the model is asked for a short goodbye; the call is hung up when that
  response is done (or after a grace period).
- end: any close of the sideband (a clean close, a drop, the 60-minute `session_expired`) is
  taken as the end: hang up upstream to be sure, settle the call at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from .errors import TokenVendorError
from .guard import deviations, expected_session, restore_event
from .pricing import PriceTable, response_cost, transcription_cost
from .sideband import SidebandClosed
from .spend import Charge, usd

GOODBYE = (
    "The user's budget for today is used up. In one short sentence, tell them so "
    "and say goodbye. Do not ask a question."
)
GOODBYE_GRACE_SECONDS = 15.0  # the goodbye's own response may never finish: hang up anyway
# A caller who starts a response each time one ends can keep the goodbye from being said:
# after this many refused asks, the call ends when the response in progress is done.
GOODBYE_ATTEMPTS = 3
POLL_SECONDS = 0.5
# At a hand-over the predecessor reads on until no event came for DRAIN_QUIET_SECONDS, or
# for DRAIN_MAX_SECONDS: events sent before the successor attached are in flight that long.
DRAIN_QUIET_SECONDS = 0.3
DRAIN_MAX_SECONDS = 1.0


class Outcome(Enum):
    ENDED = "ended"  # the call is over and settled
    HANDED_OVER = "handed_over"  # a successor watches it now
    LOST_LEASE = "lost_lease"  # another watcher holds it: this one stepped back
    OUT_OF_TIME = "out_of_time"  # no successor could be started: the deadline ends the call


class Events(Protocol):
    def recv(self, timeout: float) -> dict[str, Any] | None: ...
    def send(self, event: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class Meter(Protocol):
    def charge(self, call_id: str, user: str, event_key: str, micros: int) -> Charge: ...


class Leases(Protocol):
    def renew(self, call_id: str, me: str, seconds: float) -> bool: ...
    def end(self, call_id: str) -> None: ...
    def state(self, call_id: str) -> Any: ...


class Ender(Protocol):
    def end_call(self, call_id: str, user: str, reason: str) -> None:
        """Hang up upstream (best effort) and settle the call's minutes. Idempotent."""


class Metrics(Protocol):
    def count(self, name: str, value: float = 1, unit: str = "Count", **dims: str) -> None: ...


@dataclass(frozen=True)
class Job:
    """What the token function (or a predecessor) tells a watcher about its call."""

    call_id: str
    user: str
    profile: str
    session: dict[str, Any]  # the session the call was created with
    on_session_change: str  # "restore" or "hangup"
    ends_at: float  # epoch seconds: the server's deadline for the call
    token: str  # this watcher's lease token
    handovers: int = 0


@dataclass
class Timing:
    stop_at: float  # hand over from here on (epoch seconds)
    hard_stop: float  # leave by then whatever happens
    lease_seconds: float


@dataclass
class CallWatch:
    job: Job
    events: Events
    prices: PriceTable
    meter: Meter
    leases: Leases
    ender: Ender
    metrics: Metrics
    log: logging.Logger | Any
    clock: Callable[[], float] = time.time
    expected: dict[str, Any] = field(init=False)
    session: dict[str, Any] = field(init=False)
    charged_micros: int = 0
    dearest_response: int = 0
    goodbye: str | None = None  # None, "sent", "retry"
    goodbye_at: float = 0.0
    goodbye_asks: int = 0
    deviations_seen: int = 0

    def __post_init__(self) -> None:
        self.expected = expected_session(self.job.session)
        self.session = dict(self.job.session)

    # --- the loop ------------------------------------------------------------------------

    def run(self, timing: Timing, hand_over: Callable[[], str | None]) -> Outcome:
        """Until the call ends, the lease is lost, or a successor has attached."""
        job = self.job
        # There is no session.created on a sideband: put the profile's session in force now,
        # so whatever the browser did before this watcher attached is undone.
        if not self._send(restore_event(self.expected)):
            return self._end("closed")
        renew_at = self.clock() + timing.lease_seconds / 3
        successor: str | None = None
        while True:
            now = self.clock()
            if now >= job.ends_at:
                return self._end("deadline")
            if self.goodbye and now >= self.goodbye_at + GOODBYE_GRACE_SECONDS:
                return self._end("budget")
            if successor is None and now >= timing.hard_stop:
                # Out of time and no successor: the scheduled deadline still ends the call.
                self.events.close()
                return Outcome.OUT_OF_TIME
            if successor is None and now >= timing.stop_at:
                successor = hand_over()
                if successor is None:
                    timing.stop_at = timing.hard_stop  # could not hand over: keep watching
            if successor is not None:
                if self._successor_attached(successor):
                    return self._drain()
                if now >= timing.hard_stop:  # the successor is late: it may still attach
                    self.events.close()
                    return Outcome.OUT_OF_TIME
            elif now >= renew_at:
                if not self.leases.renew(job.call_id, job.token, timing.lease_seconds):
                    self.log.warning("lease lost", extra={"call_id": job.call_id})
                    self.events.close()
                    return Outcome.LOST_LEASE
                renew_at = now + timing.lease_seconds / 3
            wait = min(POLL_SECONDS, max(job.ends_at - now, 0.0))
            try:
                event = self.events.recv(wait)
            except SidebandClosed as closed:
                self.log.info(
                    "sideband closed", extra={"call_id": job.call_id, "code": closed.code}
                )
                return self._end("closed" if closed.code != 1001 else "session_expired")
            if event is not None:
                outcome = self.handle(event)
                if outcome is not None:
                    return outcome

    def _drain(self) -> Outcome:
        """The successor hears every event from its attach on; what was sent before it may
        still be on its way here. Read on until the line is quiet, for a second at most (a
        charge the successor also makes counts once), then leave."""
        until = self.clock() + DRAIN_MAX_SECONDS
        while (left := until - self.clock()) > 0:
            try:
                event = self.events.recv(min(DRAIN_QUIET_SECONDS, left))
            except SidebandClosed:
                return Outcome.HANDED_OVER  # the successor sees the close too, and ends the call
            if event is None:
                self.events.close()
                return Outcome.HANDED_OVER
            outcome = self.handle(event)
            if outcome is not None:
                return outcome
        self.events.close()
        return Outcome.HANDED_OVER

    def _successor_attached(self, successor: str) -> bool:
        state = self.leases.state(self.job.call_id)
        return bool(state.ended or (state.holder == successor and state.attached))

    # --- events --------------------------------------------------------------------------

    def handle(self, event: dict[str, Any]) -> Outcome | None:
        kind = event.get("type")
        if kind == "session.updated":
            return self._session_updated(event)
        if kind == "response.done":
            return self._response_done(event)
        if kind == "conversation.item.input_audio_transcription.completed":
            return self._transcribed(event)
        if kind == "error":
            return self._error(event)
        return None

    def _session_updated(self, event: dict[str, Any]) -> Outcome | None:
        session = event.get("session")
        if isinstance(session, dict):
            self.session = session
        changed = deviations(self.expected, session)
        if not changed:
            return None
        self.deviations_seen += 1
        action = "hangup" if self.job.on_session_change == "hangup" else "restore"
        self.log.warning(
            "session deviates from the profile",
            extra={"call_id": self.job.call_id, "fields": changed, "action": action},
        )
        self.metrics.count("PolicyDeviations", profile=self.job.profile, action=action)
        if action == "hangup":
            return self._end("policy")
        if not self._send(restore_event(self.expected)):
            return self._end("closed")
        return None

    def _response_done(self, event: dict[str, Any]) -> Outcome | None:
        response = event.get("response") if isinstance(event.get("response"), dict) else {}
        assert isinstance(response, dict)
        model = str(self.session.get("model") or self.job.session.get("model") or "")
        price, known = self.prices.for_model(model)
        micros = response_cost(response.get("usage"), price)
        key = f"resp:{response.get('id') or event.get('event_id')}"
        charge = self._charge(key, micros, model, known)
        self.dearest_response = max(self.dearest_response, micros)
        if self.goodbye == "sent":
            return self._end("budget")  # the goodbye has been said
        if self.goodbye == "retry":
            if self.goodbye_asks >= GOODBYE_ATTEMPTS:
                return self._end("budget")  # no goodbye could be said: end without one
            return self._say_goodbye()
        return self._check_budget(charge)

    def _transcribed(self, event: dict[str, Any]) -> Outcome | None:
        audio = self.session.get("audio") if isinstance(self.session.get("audio"), dict) else {}
        assert isinstance(audio, dict)
        config = (audio.get("input") or {}).get("transcription") or {}
        model = str(config.get("model") or "") if isinstance(config, dict) else ""
        price, known = self.prices.for_transcription(model)
        micros = transcription_cost(event.get("usage"), price)
        key = f"tr:{event.get('item_id')}:{event.get('content_index', 0)}"
        return self._check_budget(self._charge(key, micros, model, known))

    def _error(self, event: dict[str, Any]) -> Outcome | None:
        error = event.get("error") if isinstance(event.get("error"), dict) else {}
        assert isinstance(error, dict)
        code = error.get("code")
        if code == "conversation_already_has_active_response" and self.goodbye == "sent":
            self.goodbye = "retry"  # asked while the model was talking: ask again after it
        elif code != "session_expired":
            self.log.info("sideband error event", extra={"call_id": self.job.call_id, "code": code})
        return None

    # --- money ---------------------------------------------------------------------------

    def _charge(self, key: str, micros: int, model: str, known: bool) -> Charge | None:
        if not known:
            self.log.warning("no price for model: charged at the dearest", extra={"model": model})
            self.metrics.count("UnpricedModel", profile=self.job.profile)
        try:
            charge = self.meter.charge(self.job.call_id, self.job.user, key, micros)
        except TokenVendorError as exc:
            # Not metered is not free: the call goes on, the failure is counted and alarmed.
            self.log.error(
                "spend not recorded", extra={"call_id": self.job.call_id, "error": str(exc)}
            )
            self.metrics.count("WatcherFailures", stage="charge")
            return None
        self.log.debug("charged", extra={"key": key, "micros": micros, "counted": charge.counted})
        if charge.counted:
            self.charged_micros += charge.micros
            self.metrics.count(
                "SpendMicroUSD", charge.micros, "None", model=model, profile=self.job.profile
            )
        return charge

    def _check_budget(self, charge: Charge | None) -> Outcome | None:
        if charge is None or self.goodbye is not None:
            return None
        day = charge.day
        if day.exhausted or day.would_cross(self.dearest_response):
            self.log.info(
                "spend budget reached: goodbye",
                extra={
                    "call_id": self.job.call_id,
                    "spent_usd": usd(day.user_micros),
                    "left_usd": usd(day.left or 0),
                },
            )
            self.metrics.count("BudgetHangups", profile=self.job.profile)
            return self._say_goodbye()
        return None

    def _say_goodbye(self) -> Outcome | None:
        if self.goodbye is None:
            self.goodbye_at = self.clock()
        self.goodbye = "sent"
        self.goodbye_asks += 1
        if not self._send({"type": "response.create", "response": {"instructions": GOODBYE}}):
            return self._end("closed")
        return None

    # --- the end -------------------------------------------------------------------------

    def _send(self, event: dict[str, Any]) -> bool:
        try:
            self.events.send(event)
        except SidebandClosed:
            return False
        return True

    def _end(self, reason: str) -> Outcome:
        job = self.job
        self.log.info(
            "call ended",
            extra={
                "call_id": job.call_id,
                "reason": reason,
                "charged_usd": usd(self.charged_micros),
                "deviations": self.deviations_seen,
            },
        )
        try:
            self.ender.end_call(job.call_id, job.user, reason)
        except TokenVendorError as exc:
            # The scheduled deadline still ends and settles the call.
            self.log.error(
                "could not end the call", extra={"call_id": job.call_id, "error": str(exc)}
            )
            self.metrics.count("WatcherFailures", stage="end")
        try:
            self.leases.end(job.call_id)
        except TokenVendorError:
            self.metrics.count("WatcherFailures", stage="lease")
        self.events.close()
        return Outcome.ENDED
