"""Watching a GPT-Live session (docs/live.md): the dialect of `watch.Watch` for Live's sideband
(`wss://…/v1/live/sessions/{id}/attach`).

- money: voice comes as cumulative seconds (`session.usage.updated`, and the final count in
  `session.closed`): the call's voice total is brought up to their cost, active and standby at
  their rates, so it is charged exactly once whatever the cadence and whoever reports it.
  Delegated backend work is charged from each terminal `response.event` (once per response).
- budget: between usage updates spend is bounded by the clock (OpenAI bills at most the
  active rate): after each charge the watcher knows when what is left would run out, and asks
  for a goodbye `GOODBYE_LEAD_SECONDS` before (a `session.instructions.append`, trusted
  steering that may interrupt), then sends `session.close` once the goodbye has been spoken
  (or its grace is over).
- end: the session is closed with `session.close` on this sideband, and is over when
  `session.closed` comes (its reason becomes the call's `end_reason`, its usage the final
  charge); then it is settled, without another hangup. A close that brings no
  `session.closed` in time, or a sideband that is gone and cannot be attached again, falls
  back to the closer (a sideband of its own), and fails closed like every end.
- policy: what a profile fixes cannot change in a Live session, except the Responses
  backend's settings (and the acknowledgement delay, and triggers) that a `session.update`
  may switch: every `session.updated` is compared with the profile's, and a change is put
  back (at most once a second) or ends the session, as the profile says.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.deadline import Deadline
from ..core.ending import EndReason
from ..core.pricing import backend_cost, live_usage_cost
from ..core.spend import LIVE_UP_FRONT_SECONDS, VOICE_TOTAL, Charge, DaySpend
from .guard import deviations
from .sideband import SidebandClosed, SidebandRefused
from .watch import TOTAL, Events, Outcome, Watch

GOODBYE = (
    "The user's budget for today is used up and this conversation ends in a moment. In one "
    "short sentence, tell them so and say goodbye. Do not ask a question."
)
# The goodbye is asked for this long before the budget would run out at the active rate: the
# goodbye's grace and the close fit inside it, so voice alone never crosses the budget.
GOODBYE_LEAD_SECONDS = 12.0
GOODBYE_GRACE_SECONDS = 10.0  # the goodbye may never be spoken: close anyway after this
GOODBYE_QUIET_SECONDS = 1.5  # the goodbye is over when the model's words stop this long
CLOSE_WAIT_SECONDS = 8.0  # a session.close with no session.closed after this: the closer
RESTORE_PAUSE_SECONDS = 1.0
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
# session.closed's reason, as the call's end_reason (close_requested: whoever asked says why;
# the ledger holds their claim, so `closed` here is only a fallback).
REASONS = {
    "close_requested": EndReason.CLOSED,
    "expired": EndReason.SESSION_EXPIRED,
    "content": EndReason.CONTENT,
    "remote_hangup": EndReason.CLOSED,
    "connection_lost": EndReason.CLOSED,
}
VOICE = TOTAL + VOICE_TOTAL


def expected_backend(session: dict[str, Any]) -> dict[str, Any]:
    """What a `session.update` could change that the profile fixes: the Responses backend's
    settings (its tools none when the profile names none), the acknowledgement delay and the
    triggers, as the session was created."""
    expected: dict[str, Any] = {}
    delegation = session.get("delegation")
    if isinstance(delegation, dict) and delegation.get("type") == "responses":
        held: dict[str, Any] = {"type": "responses"}
        held["responses"] = {"tools": []} | copy.deepcopy(delegation.get("responses") or {})
        if "acknowledgement_delay_ms" in delegation:
            held["acknowledgement_delay_ms"] = delegation["acknowledgement_delay_ms"]
        expected["delegation"] = held
    if "triggers" in session:
        expected["triggers"] = copy.deepcopy(session["triggers"])
    return expected


@dataclass
class LiveWatch(Watch):
    # Attaches the session's sideband again (None: it cannot), when this one drops while the
    # session may still be running: OpenAI replays nothing, but usage totals are cumulative.
    reopen: Callable[[], Events | None] | None = None
    expected: dict[str, Any] = field(init=False)
    model: str = field(init=False)
    backend_model: str = field(init=False)
    dearest_backend: int = 0
    started_at: float = field(init=False)  # the session runs at most since then
    budget_at: float | None = None  # when the goodbye is due by the clock's bound
    spoken_at: float | None = None  # the goodbye's last words heard
    claimed: EndReason | None = None  # the cause recorded ahead of the end
    closing: EndReason | None = None  # session.close sent, for this reason
    closing_at: float = 0.0
    restored_at: float = float("-inf")
    restore_due: float | None = None

    def __post_init__(self) -> None:
        self.expected = expected_backend(self.job.session)
        self.model = str(self.job.session.get("model") or "")
        delegation = self.job.session.get("delegation")
        responses = delegation.get("responses") if isinstance(delegation, dict) else None
        model = responses.get("model") if isinstance(responses, dict) else None
        self.backend_model = str(model or "")
        self.started_at = self.job.started_at or self.clock()

    def _begin(self) -> Outcome | None:
        # The session's config was fixed at its create: it is in force at once (the token
        # function's answer waits for that). The 15 s its create billed are on its meter
        # already (the token function charged them); this charge of the same total adds
        # nothing, and reads the day for the budget's clock.
        super()._begin()
        price, _ = self.prices.for_live(self.model)
        up_front = live_usage_cost({"seconds": LIVE_UP_FRONT_SECONDS}, price)
        return self._check_budget(self._record(VOICE, up_front, self.model))

    # --- events --------------------------------------------------------------------------

    def handle(self, event: dict[str, Any]) -> Outcome | None:
        kind = event.get("type")
        if kind == "session.usage.updated":
            return self._check_budget(self._voice(event.get("usage")))
        if kind == "response.event":
            return self._backend(event.get("event"))
        if kind == "session.output_transcript.delta" and self.goodbye == "heard":
            self.spoken_at = self.clock()
        elif kind == "session.instructions.appended" and self.goodbye == "sent":
            self.goodbye = "heard"  # accepted: the model is saying it now
        elif kind == "session.updated":
            return self._session_updated(event.get("session"))
        elif kind == "session.closed":
            return self._session_closed(event)
        elif kind == "error":
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            code = error.get("code") if isinstance(error, dict) else None
            self.log.info("sideband error event", extra={"call_id": self.job.call_id, "code": code})
        return None

    def _voice(self, usage: Any) -> Charge | None:
        """The voice's running total, brought up to what `usage` (cumulative) costs."""
        price, known = self.prices.for_live(self.model)
        return self._charge(VOICE, live_usage_cost(usage, price), self.model, known)

    def _backend(self, nested: Any) -> Outcome | None:
        if not isinstance(nested, dict) or nested.get("type") not in TERMINAL:
            return None
        response = nested.get("response") if isinstance(nested.get("response"), dict) else {}
        assert isinstance(response, dict)
        model = str(response.get("model") or self.backend_model)
        price, known = self.prices.for_backend(model)
        micros = backend_cost(response.get("usage"), price)
        key = f"resp:{response.get('id') or nested.get('event_id')}"
        charge = self._charge(key, micros, model, known)
        self.dearest_backend = max(self.dearest_backend, micros)
        return self._check_budget(charge)

    def _session_updated(self, session: Any) -> Outcome | None:
        changed = deviations(self.expected, session) if self.expected else []
        if not changed:
            self.restore_due = None
            return None
        self.deviations_seen += 1
        action = "hangup" if self.job.on_session_change == "hangup" else "restore"
        self.log.warning(
            "session deviates from the profile",
            extra={"call_id": self.job.call_id, "fields": changed, "action": action},
        )
        self.metrics.count("PolicyDeviations", profile=self.job.profile, action=action)
        if action == "hangup":
            return self._stop(EndReason.POLICY)
        # Put back at once, or (a restore just went out) when the pause is over: a browser
        # that floods session.updates costs one restore a second, never a hot loop.
        self.restore_due = max(self.clock(), self.restored_at + RESTORE_PAUSE_SECONDS)
        return self._tick(self.clock())

    def _session_closed(self, event: dict[str, Any]) -> Outcome | None:
        """The session is over: its final usage is charged, and it is settled at once."""
        session = event.get("session")
        if isinstance(session, dict) and isinstance(session.get("model"), str):
            self.model = session["model"]
        self._voice(event.get("usage"))
        reason = self.closing or REASONS.get(str(event.get("reason")), EndReason.CLOSED)
        self.log.info(
            "session closed",
            extra={"call_id": self.job.call_id, "reason": str(event.get("reason"))[:40]},
        )
        self.upstream_ended = True
        self.line_closed = True
        return self._end(reason)

    # --- the clock -----------------------------------------------------------------------

    def _tick(self, now: float) -> Outcome | None:
        if self.closing is not None:
            if now >= self.closing_at + CLOSE_WAIT_SECONDS:
                self.log.warning("no session.closed: closing it from a sideband of its own")
                return self._end(self.closing)
            return None
        if self.restore_due is not None and now >= self.restore_due:
            self.restore_due, self.restored_at = None, now
            if not self._send({"type": "session.update", "session": self.expected}):
                return self._closed(None)
        if self.goodbye is None:
            if self.budget_at is not None and now >= self.budget_at:
                self.metrics.count("BudgetHangups", profile=self.job.profile)
                return self._say_goodbye()
            return None
        quiet = self.spoken_at is not None and now >= self.spoken_at + GOODBYE_QUIET_SECONDS
        if quiet or now >= self.goodbye_at + GOODBYE_GRACE_SECONDS:
            return self._stop(EndReason.SPEND_LIMIT)
        return None

    def _next_timer(self) -> float | None:
        timers = [self.restore_due]
        if self.closing is not None:
            timers = [self.closing_at + CLOSE_WAIT_SECONDS]
        elif self.goodbye is None:
            timers.append(self.budget_at)
        else:
            timers.append(self.goodbye_at + GOODBYE_GRACE_SECONDS)
            if self.spoken_at is not None:
                timers.append(self.spoken_at + GOODBYE_QUIET_SECONDS)
        return min((t for t in timers if t is not None), default=None)

    # --- the budget ----------------------------------------------------------------------

    def _check_budget(self, charge: Charge | None) -> Outcome | None:
        if charge is not None and charge.day is not None and self.goodbye is None:
            self._plan_goodbye(charge.day)
        return super()._check_budget(charge)

    def _plan_goodbye(self, day: DaySpend) -> None:
        """When the session's voice reaches what the budget allows, billed as if every second
        since the call was admitted were active (never less than OpenAI bills): its voice total
        charged so far plus what is left, less the goodbye's lead and the dearest backend
        response so far. None: no budget."""
        left = day.left
        if left is None:
            self.budget_at = None
            return
        price, _ = self.prices.for_live(self.model)
        per_second = live_usage_cost({"seconds": 1}, price)  # rounded up: sooner, never later
        allowed = self.totals.get(VOICE, 0) + left - self.dearest_backend
        seconds = allowed / per_second - GOODBYE_LEAD_SECONDS
        self.budget_at = self.started_at + max(seconds, 0.0)

    def _budget_reached(self, day: DaySpend) -> bool:
        return self.budget_at is not None and self.budget_at <= self.clock()

    def _say_goodbye(self) -> Outcome | None:
        self.goodbye, self.goodbye_at = "sent", self.clock()
        self._claim(EndReason.SPEND_LIMIT)
        event = {"type": "session.instructions.append", "content": GOODBYE, "delegation_id": None}
        if not self._send(event):
            return self._closed(None)
        return None

    # --- the end -------------------------------------------------------------------------

    def _stop(self, reason: EndReason) -> Outcome | None:
        """`session.close` on this sideband; the end follows its `session.closed`. The cause
        is recorded first: the browser sees the end at once and asks why."""
        if self.closing is not None or self.end_pending is not None:
            return None
        self.closing, self.closing_at = reason, self.clock()
        self._claim(reason)
        if not self._send({"type": "session.close"}):
            return self._end(reason)  # the line is gone: the closer attaches its own
        return None

    def _closed(self, closed: SidebandClosed | None) -> Outcome | None:
        """The sideband dropped without a `session.closed`. Closing: the session is over (the
        closer confirms it). Otherwise it may still run: attach again, or end it."""
        code = closed.code if closed is not None else None
        self.log.info("sideband closed", extra={"call_id": self.job.call_id, "code": code})
        if self.closing is None and self.end_pending is None and self._reattach():
            return None
        self.line_closed = True
        return self._end(self.closing or EndReason.CLOSED)

    def _reattach(self) -> bool:
        if self.reopen is None:
            return False
        try:
            events = self.reopen()
        except SidebandRefused:
            events = None
        if events is None:
            return False
        self.events.close()
        self.events = events
        self.metrics.count("SidebandReattached", profile=self.job.profile)
        return True

    def _claim(self, reason: EndReason) -> None:
        """The cause, recorded once ahead of the end (the first one stands in the ledger)."""
        if self.claimed is None:
            self.claimed = reason
            self.ender.claim(
                user=self.job.user, call_id=self.job.call_id, reason=reason, deadline=Deadline(5.0)
            )
