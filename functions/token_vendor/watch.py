"""Watching one call through its sideband: hold the policy, meter the money, enforce the
budget, notice the end, hand over in time. Knows nothing of Lambda or HTTP: the sideband,
the ledgers and the hangup come in as adapters.

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
  taken as the end: hang up upstream to be sure, settle the call at once.

A DynamoDB failure is not the end of watching: a charge that could not be recorded is kept and
tried again (its event key makes that safe), a failed lease renewal or read is tried again at
the next tick, and the watcher gives up only when its lease would have expired. Whatever
happens, the sideband is closed when `run` returns or raises (a reused Lambda environment
must not keep a reader thread of a call it no longer watches).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from .deadline import Deadline
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
# A restore that does not take (the session.updated that follows it still deviates): either
# OpenAI reports a field otherwise than we send it, or a browser sent session.updates of its
# own in between. After this many in RESTORE_WINDOW_SECONDS (alarmed) the watcher still
# restores every deviation, but at most once per RESTORE_PAUSE_SECONDS: a mismatch then costs
# one restore a second instead of a hot loop, and a browser cannot switch the policy off.
RESTORE_FAILURES = 3
RESTORE_WINDOW_SECONDS = 60.0
RESTORE_PAUSE_SECONDS = 1.0
RETRY_CHARGES_SECONDS = 1.0  # charges not yet recorded are tried again this often
HANDOVER_RETRY_SECONDS = 1.0  # a hand-over DynamoDB did not take is tried again after this


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
    def charge(
        self,
        call_id: str,
        user: str,
        event_key: str,
        micros: int,
        deadline: Deadline | None = None,
    ) -> Charge: ...


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
    lease_expires: float | None = None  # when the lease taken before `run` runs out


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
    deadline: Deadline | None = None  # the Lambda's: charges retry only inside it
    expected: dict[str, Any] = field(init=False)
    session: dict[str, Any] = field(init=False)
    charged_micros: int = 0
    dearest_response: int = 0
    goodbye: str | None = None  # None, "sent", "retry"
    goodbye_at: float = 0.0
    goodbye_asks: int = 0
    deviations_seen: int = 0
    restore_sent: bool = False  # a restore awaits the session.updated that answers it
    restored_at: float = float("-inf")  # when the last restore was sent
    restore_due: float | None = None  # a deviation waits for a paced restore until then
    restore_failures: deque[float] = field(default_factory=deque)
    # Charges DynamoDB did not take: (event key, micro-dollars, model), tried again.
    unrecorded: dict[str, tuple[int, str]] = field(default_factory=dict)
    retry_charges_at: float = 0.0

    def __post_init__(self) -> None:
        self.expected = expected_session(self.job.session)
        self.session = dict(self.job.session)

    # --- the loop ------------------------------------------------------------------------

    def run(self, timing: Timing, hand_over: Callable[[], str | None]) -> Outcome:
        """Until the call ends, the lease is lost, or a successor has attached. The sideband
        is closed on the way out, whatever the way."""
        try:
            return self._run(timing, hand_over)
        finally:
            self._last_try_unrecorded()
            self.events.close()

    def _run(self, timing: Timing, hand_over: Callable[[], str | None]) -> Outcome:
        job = self.job
        # There is no session.created on a sideband: put the profile's session in force now,
        # so whatever the browser did before this watcher attached is undone.
        if not self._restore():
            return self._end("closed")
        start = self.clock()
        renew_at = start + timing.lease_seconds / 3
        lease_until = timing.lease_expires or start + timing.lease_seconds
        successor: str | None = None
        while True:
            now = self.clock()
            if now >= job.ends_at:
                return self._end("deadline")
            if self.goodbye and now >= self.goodbye_at + GOODBYE_GRACE_SECONDS:
                return self._end("budget")
            if successor is None and now >= timing.hard_stop:
                # Out of time and no successor: the scheduled deadline still ends the call.
                return Outcome.OUT_OF_TIME
            if successor is None and now >= timing.stop_at:
                try:
                    successor = hand_over()
                except TokenVendorError as exc:  # the lease not written: try again shortly
                    self.log.warning(
                        "hand-over not written", extra={"call_id": job.call_id, "error": str(exc)}
                    )
                    self.metrics.count("WatcherFailures", stage="handover")
                    timing.stop_at = min(now + HANDOVER_RETRY_SECONDS, timing.hard_stop)
                else:
                    if successor is None:
                        timing.stop_at = timing.hard_stop  # could not hand over: keep watching
            if successor is not None:
                if self._successor_attached():
                    return self._drain()
                if now >= timing.hard_stop:  # the successor is late: it may still attach
                    return Outcome.OUT_OF_TIME
            elif now >= renew_at:
                try:
                    held = self.leases.renew(job.call_id, job.token, timing.lease_seconds)
                except TokenVendorError as exc:
                    # Transient until the lease would have run out: then another watcher
                    # may hold it, and this one steps back (the deadline still ends the call).
                    self.metrics.count("WatcherFailures", stage="lease")
                    if now >= lease_until:
                        self.log.error(
                            "lease not renewed in time: stepping back",
                            extra={"call_id": job.call_id, "error": str(exc)},
                        )
                        return Outcome.LOST_LEASE
                    self.log.warning(
                        "lease not renewed: trying again",
                        extra={"call_id": job.call_id, "error": str(exc)},
                    )
                else:
                    if not held:
                        self.log.warning("lease lost", extra={"call_id": job.call_id})
                        return Outcome.LOST_LEASE
                    renew_at = now + timing.lease_seconds / 3
                    lease_until = now + timing.lease_seconds
            if self.restore_due is not None and now >= self.restore_due and not self._restore():
                return self._end("closed")
            if self.unrecorded and now >= self.retry_charges_at:
                outcome = self._retry_unrecorded()
                if outcome is not None:
                    return outcome
            wait = min(POLL_SECONDS, max(job.ends_at - now, 0.0))
            if self.restore_due is not None:
                wait = min(wait, max(self.restore_due - now, 0.0))
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
                return Outcome.HANDED_OVER
            outcome = self.handle(event)
            if outcome is not None:
                return outcome
        return Outcome.HANDED_OVER

    def _successor_attached(self) -> bool:
        """The watcher now holding the lease (the successor, under the fresh token it took
        it with) has its sideband open, or the call is over."""
        try:
            state = self.leases.state(self.job.call_id)
        except TokenVendorError as exc:  # transient: asked again at the next tick
            self.log.warning(
                "lease not read", extra={"call_id": self.job.call_id, "error": str(exc)}
            )
            self.metrics.count("WatcherFailures", stage="lease")
            return False
        return bool(state.ended or (state.attached and state.holder not in (None, self.job.token)))

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
        answers_restore, self.restore_sent = self.restore_sent, False
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
            return self._end("policy")
        # Every deviation is undone, whoever caused it: at once, or when the pause between
        # restores is over (from the loop) while restores are seen not to take.
        now = self.clock()
        due = self.restored_at + RESTORE_PAUSE_SECONDS if self._restores_failing(now) else now
        if now < due:
            self.restore_due = due
            return None
        return None if self._restore() else self._end("closed")

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
        return self._record(key, micros, model)

    def _record(self, key: str, micros: int, model: str) -> Charge | None:
        try:
            charge = self.meter.charge(self.job.call_id, self.job.user, key, micros, self.deadline)
        except TokenVendorError as exc:
            # Not metered is not free: the call goes on, the charge is kept and tried again
            # (counted once whoever records it), the failure is counted and alarmed.
            if key not in self.unrecorded:
                self.unrecorded[key] = (micros, model)
                self.retry_charges_at = self.clock() + RETRY_CHARGES_SECONDS
                self.log.error(
                    "spend not recorded: kept to try again",
                    extra={"call_id": self.job.call_id, "key": key, "error": str(exc)},
                )
                self.metrics.count("WatcherFailures", stage="charge")
            return None
        self.unrecorded.pop(key, None)
        self.log.debug("charged", extra={"key": key, "micros": micros, "counted": charge.counted})
        if charge.counted:
            self.charged_micros += charge.micros
            self.metrics.count(
                "SpendMicroUSD", charge.micros, "None", model=model, profile=self.job.profile
            )
        return charge

    def _retry_unrecorded(self) -> Outcome | None:
        outcome: Outcome | None = None
        for charge in self._record_kept():
            outcome = outcome or self._check_budget(charge)
        self.retry_charges_at = self.clock() + RETRY_CHARGES_SECONDS
        return outcome

    def _record_kept(self) -> list[Charge]:
        """One more try for the charges kept unrecorded, in order, until one fails again
        (the rest waits for the next try): the charges that went in."""
        recorded: list[Charge] = []
        for key, (micros, model) in list(self.unrecorded.items()):
            charge = self._record(key, micros, model)
            if charge is None:
                break
            recorded.append(charge)
        return recorded

    def _last_try_unrecorded(self) -> None:
        """Leaving: one more try for what is still unrecorded, then say what was lost (no
        budget check: a goodbye asked now would be left for nobody to end)."""
        self._record_kept()
        if self.unrecorded:
            lost = sum(micros for micros, _ in self.unrecorded.values())
            self.log.error(
                "spend never recorded",
                extra={
                    "call_id": self.job.call_id,
                    "events": sorted(self.unrecorded),
                    "micros": lost,
                },
            )
            self.metrics.count("UnrecordedMicroUSD", lost, "None", profile=self.job.profile)

    def _check_budget(self, charge: Charge | None) -> Outcome | None:
        if charge is None or self.goodbye is not None:
            return None
        day = charge.day
        if day is None:  # recorded, but the day's totals were not read: the next charge reads
            self.log.warning("day's spend not read: budget checked at the next charge")
            return None
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
        return Outcome.ENDED
