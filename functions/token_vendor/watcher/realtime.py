"""Watching a Realtime call (docs/openai-contract.md §6-7): the dialect of `watch.Watch` for
the Realtime API's sideband (`wss://…/v1/realtime?call_id=`).

- policy: every `session.updated` is compared with the fields the profile fixes (guard.py);
  a deviation is restored with a `session.update` (at once; at most once a second while
  restores are seen not to take, but never given up), or ends the call, as the profile says.
  Only the names of the fields are logged, never their text.
- money: every `response.done` usage and every input-transcription usage is priced and added
  to the user's day once (the event's id is the ledger's key), as it arrives.
- budget: when today's spend reaches the limit, or the next response like the dearest one
  so far would cross it, the model is asked for a short goodbye; the call is hung up when that
  response is done (or after a grace period).
- end: any close of the sideband (a clean close, a drop, the 60-minute `session_expired`) is
  taken as the end (the Realtime API reports no other): hang up upstream to be sure, settle
  the call at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..core.ending import EndReason
from ..core.pricing import response_cost, transcription_cost
from ..core.spend import DaySpend
from .guard import deviations, expected_session, hold_first_reported, restore_event
from .sideband import SidebandClosed
from .watch import Outcome, Watch

GOODBYE = (
    "The user's budget for today is used up. In one short sentence, tell them so "
    "and say goodbye. Do not ask a question."
)
GOODBYE_GRACE_SECONDS = 15.0  # the goodbye's own response may never finish: hang up anyway
# A caller who starts a response each time one ends can keep the goodbye from being said:
# after this many refused asks, the call ends when the response in progress is done.
GOODBYE_ATTEMPTS = 3
# A restore that does not take (the session.updated that follows it still deviates): either
# OpenAI reports a field otherwise than we send it, or a browser sent session.updates of its
# own in between. After this many in RESTORE_WINDOW_SECONDS (alarmed) the watcher still
# restores every deviation, but at most once per RESTORE_PAUSE_SECONDS: a mismatch then costs
# one restore a second instead of a hot loop, and a browser cannot switch the policy off.
RESTORE_FAILURES = 3
RESTORE_WINDOW_SECONDS = 60.0
RESTORE_PAUSE_SECONDS = 1.0


@dataclass
class RealtimeWatch(Watch):
    expected: dict[str, Any] = field(init=False)
    session: dict[str, Any] = field(init=False)
    dearest_response: int = 0
    goodbye_asks: int = 0  # goodbye: None, "sent", "retry"
    restore_sent: bool = False  # a restore awaits the session.updated that answers it
    first_reported: bool = False  # the fields OpenAI documents no default for are held
    restored_at: float = float("-inf")  # when the last restore was sent
    restore_due: float | None = None  # a deviation waits for a paced restore until then
    restore_failures: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.expected = expected_session(self.job.session)
        self.session = dict(self.job.session)

    def _begin(self) -> Outcome | None:
        # There is no session.created on a sideband: put the profile's session in force now,
        # so whatever the browser did before this watcher attached is undone.
        if not self._restore():
            self.line_closed = True
            return self._end(EndReason.CLOSED)
        return super()._begin()

    def _due(self, now: float) -> EndReason | None:
        """The server's deadline, or a goodbye past its grace."""
        if self.goodbye and now >= self.goodbye_at + GOODBYE_GRACE_SECONDS:
            return super()._due(now) or EndReason.SPEND_LIMIT
        return super()._due(now)

    def _tick(self, now: float) -> Outcome | None:
        if self.restore_due is not None and now >= self.restore_due and not self._restore():
            return self._closed(None)
        return None

    def _next_timer(self) -> float | None:
        return self.restore_due

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
        answers_restore, self.restore_sent = self.restore_sent, False
        if answers_restore and not self.first_reported:
            # OpenAI's answer to the first restore, sent before the browser had the call's
            # answer: what it reports for the fields it documents no default for is held.
            self.expected = hold_first_reported(self.expected, session)
            self.first_reported = True
        changed = deviations(self.expected, session)
        if not changed:
            self.restore_due = None  # the session holds the profile: nothing left to undo
            return None
        self.deviations_seen += 1
        action = "hangup" if self.job.on_session_change == "hangup" else "restore"
        if action == "restore" and answers_restore:
            self._restore_did_not_take(changed)
        self.log.warning(
            "session deviates from the profile",
            extra={"call_id": self.job.call_id, "fields": changed, "action": action},
        )
        self.metrics.count("PolicyDeviations", profile=self.job.profile, action=action)
        if action == "hangup":
            return self._end(EndReason.POLICY)
        # Every deviation is undone, whoever caused it: at once, or when the pause between
        # restores is over (from the loop) while restores are seen not to take.
        now = self.clock()
        due = self.restored_at + RESTORE_PAUSE_SECONDS if self._restores_failing(now) else now
        if now < due:
            self.restore_due = due
            return None
        return None if self._restore() else self._closed(None)

    def _restore(self) -> bool:
        self.restore_sent = True
        self.restored_at = self.clock()
        self.restore_due = None
        return self._send(restore_event(self.expected))

    def _restores_failing(self, now: float) -> bool:
        failures = self.restore_failures
        while failures and failures[0] < now - RESTORE_WINDOW_SECONDS:
            failures.popleft()
        return len(failures) >= RESTORE_FAILURES

    def _restore_did_not_take(self, changed: list[str]) -> None:
        """The session.updated after our own restore still deviates: OpenAI reports a field
        otherwise than we send it, or the browser's own session.updates came in between. A
        few times in a window, and the watcher paces its restores (at most one per
        RESTORE_PAUSE_SECONDS), says which fields, and counts a failure (alarmed). It never
        stops restoring, or a browser that floods session.updates would switch the policy
        off; it does not hang up either, or a mismatch of ours would end every call."""
        now = self.clock()
        was_failing = self._restores_failing(now)
        self.restore_failures.append(now)
        if not was_failing and self._restores_failing(now):
            self.log.error(
                "restores do not take: restoring at most once a second",
                extra={"call_id": self.job.call_id, "fields": changed},
            )
            self.metrics.count("WatcherFailures", stage="policy")

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
            return self._end(EndReason.SPEND_LIMIT)  # the goodbye has been said
        if self.goodbye == "retry":
            if self.goodbye_asks >= GOODBYE_ATTEMPTS:
                return self._end(EndReason.SPEND_LIMIT)  # no goodbye could be said: end without one
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

    # --- the budget --------------------------------------------------------------

    def _budget_reached(self, day: DaySpend) -> bool:
        return day.exhausted or day.would_cross(self.dearest_response)

    def _say_goodbye(self) -> Outcome | None:
        if self.goodbye is None:
            self.goodbye_at = self.clock()
        self.goodbye = "sent"
        self.goodbye_asks += 1
        if not self._send({"type": "response.create", "response": {"instructions": GOODBYE}}):
            return self._closed(None)
        return None

    def _closed(self, closed: SidebandClosed | None) -> Outcome | None:
        """The sideband ended (`closed`; None: a send found it closed): the call is taken to
        have ended, and is hung up to be sure."""
        self.line_closed = True
        code = closed.code if closed is not None else None
        self.log.info("sideband closed", extra={"call_id": self.job.call_id, "code": code})
        return self._end(EndReason.SESSION_EXPIRED if code == 1001 else EndReason.CLOSED)
