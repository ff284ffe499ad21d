"""Watching one call through its sideband, whatever OpenAI API it runs on: the loop that
holds the lease, hands over in time, records the money exactly once and ends the call. What
differs between the APIs (the events, the policy, the goodbye, how a call is ended) is the
dialect's: `realtime.RealtimeWatch` and `live.LiveWatch`. Knows nothing of Lambda or HTTP: the
sideband, the ledgers and the hangup come in as adapters.

A DynamoDB failure is not the end of watching: a charge that could not be recorded is kept and
tried again (its event key, or its running total, makes that safe), a failed lease renewal or
read is tried again at the next tick, and the watcher gives up only when its lease would have
expired. An end whose hangup or settle failed is tried again, backing off, while metering goes
on: the call is settled only once it is known to be over. Whatever happens, the sideband is
closed when `run` returns or raises (a reused Lambda environment must not keep a reader thread
of a call it no longer watches).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from ..core.deadline import Deadline
from ..core.ending import Ending, EndReason
from ..core.errors import TokenVendorError
from ..core.ids import CallId, UserId
from ..core.jobs import Job
from ..core.pricing import PriceTable
from ..core.spend import Charge, DaySpend, usd
from .controls import Meter, UserControls
from .sideband import SidebandClosed

POLL_SECONDS = 0.5
# At a hand-over the predecessor reads on until no event came for DRAIN_QUIET_SECONDS, or
# for DRAIN_MAX_SECONDS: events sent before the successor attached are in flight that long.
DRAIN_QUIET_SECONDS = 0.3
DRAIN_MAX_SECONDS = 1.0
RETRY_CHARGES_SECONDS = 1.0  # charges not yet recorded are tried again this often
HANDOVER_RETRY_SECONDS = 1.0  # a hand-over DynamoDB did not take is tried again after this
END_SECONDS = 15.0  # hangup and settle, each with its own retries inside
END_RETRY_SECONDS = 1.0  # an end that failed is tried again after this, doubling
END_RETRY_MAX_SECONDS = 8.0
# A charge key naming a running total of the call's meter (a Live session's voice): the total
# is brought up to the amount, not added to (core.spend.SpendLedger.charge_total).
TOTAL = "total:"


class Outcome(Enum):
    ENDED = "ended"  # the call is over and settled
    HANDED_OVER = "handed_over"  # a successor watches it now
    LOST_LEASE = "lost_lease"  # another watcher holds it: this one stepped back
    OUT_OF_TIME = "out_of_time"  # no successor could be started: the deadline ends the call


class Events(Protocol):
    def recv(self, timeout: float) -> dict[str, Any] | None: ...
    def send(self, event: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class Leases(Protocol):
    def renew(self, call_id: CallId, me: str, seconds: float) -> bool: ...
    def end(self, call_id: CallId) -> None: ...
    def state(self, call_id: CallId) -> Any: ...


class Ender(Protocol):  # core.ending.CallEnder
    def end(
        self,
        *,
        user: UserId,
        call_id: CallId,
        reason: EndReason,
        deadline: Deadline,
        family: str = "realtime",
        upstream_ended: bool = False,
    ) -> Ending: ...

    def claim(
        self, *, user: UserId, call_id: CallId, reason: EndReason, deadline: Deadline
    ) -> None: ...


class Metrics(Protocol):
    def count(self, name: str, value: float = 1, unit: str = "Count", **dims: str) -> None: ...


@dataclass
class Timing:
    stop_at: float  # hand over from here on (epoch seconds)
    hard_stop: float  # leave by then whatever happens
    lease_seconds: float
    lease_expires: float | None = None  # when the lease taken before `run` runs out


@dataclass
class Watch:
    """The loop and the money every dialect shares. A dialect says how the watch begins
    (`_begin`), what each event means (`handle`), what its own timers do (`_tick`,
    `_next_timer`), how it stops a call (`_stop`), what a closed sideband means (`_closed`),
    when the budget is reached (`_budget_reached`) and how the goodbye is asked for."""

    job: Job
    events: Events
    prices: PriceTable
    meter: Meter
    leases: Leases
    ender: Ender
    metrics: Metrics
    log: logging.Logger | Any
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    deadline: Deadline | None = None  # the Lambda's: charges retry only inside it
    # Called once the profile's session is known to be in force: the watcher then says it is
    # attached, and the token function answers the caller's offer.
    in_force: Callable[[], None] | None = None
    charged_micros: int = 0
    goodbye: str | None = None  # None, or how far the goodbye got (the dialect's words)
    goodbye_at: float = 0.0
    deviations_seen: int = 0
    # Charges DynamoDB did not take: (event key, micro-dollars, model), tried again.
    unrecorded: dict[str, tuple[int, str]] = field(default_factory=dict)
    retry_charges_at: float = 0.0
    totals: dict[str, int] = field(default_factory=dict)  # running totals recorded, by key
    # An end whose hangup (or settle) failed: the call may live on, so it is not settled and
    # the lease is kept; the end is tried again (backing off) while metering goes on.
    end_pending: EndReason | None = None
    end_retry_at: float = 0.0
    end_pause: float = END_RETRY_SECONDS
    # The session is known to be over upstream (GPT-Live's session.closed): the end settles
    # without hanging up.
    upstream_ended: bool = False
    line_closed: bool = False  # the sideband is gone: nothing more to read
    # The operator's controls of the user (watcher.controls), polled: a block ends the call.
    user_controls: UserControls | None = None
    blocked_seen: bool = False

    # --- what a dialect says ----------------------------------------------------------------

    def _begin(self) -> Outcome | None:
        """The watch's first step, before the loop (None: go on watching)."""
        if self.in_force is not None:
            self.in_force()
        return None

    def handle(self, event: dict[str, Any]) -> Outcome | None:
        raise NotImplementedError

    def _tick(self, now: float) -> Outcome | None:
        """The dialect's own timers, once a loop (None: go on)."""
        return None

    def _next_timer(self) -> float | None:
        """When `_tick` next has something to do (epoch seconds), to wake the loop for it."""
        return None

    def _stop(self, reason: EndReason) -> Outcome | None:
        """End the call for `reason` the way its API ends one (by default: hang up, settle)."""
        return self._end(reason)

    def _closed(self, closed: SidebandClosed | None) -> Outcome | None:
        """The sideband ended (`closed`; None: a send found it closed)."""
        raise NotImplementedError

    def _budget_reached(self, day: DaySpend) -> bool:
        raise NotImplementedError

    def _say_goodbye(self) -> Outcome | None:
        raise NotImplementedError

    def _ends(self, now: float) -> EndReason | None:
        """An end decided outside the call: the clock's (`_due`), or the operator's block."""
        if (due := self._due(now)) is not None:
            return due
        if self._blocked(now):
            return EndReason.BLOCKED
        controls = self.user_controls
        if controls is not None and self.job.call_id in controls.controls.end_calls:
            return EndReason.OPERATOR
        return None

    def _blocked(self, now: float) -> bool:
        """The operator blocked the user (read every CONTROL_POLL_SECONDS)."""
        if self.user_controls is None or not self.user_controls.blocked(now):
            return False
        if not self.blocked_seen:
            self.blocked_seen = True
            self.log.info("user blocked: ending the call", extra={"call_id": self.job.call_id})
            self.metrics.count("BlockedHangups", profile=self.job.profile)
        return True

    def _due(self, now: float) -> EndReason | None:
        """An end the clock decides: by default, the server's deadline."""
        return EndReason.DEADLINE if now >= self.job.ends_at else None

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
        if (outcome := self._begin()) is not None:
            return outcome
        start = self.clock()
        renew_at = start + timing.lease_seconds / 3
        lease_until = timing.lease_expires or start + timing.lease_seconds
        successor: str | None = None
        while True:
            now = self.clock()
            if self.end_pending is not None:
                if now >= self.end_retry_at and (outcome := self._try_end()) is not None:
                    return outcome
            elif (end := self._ends(now)) is not None and (outcome := self._stop(end)) is not None:
                return outcome
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
            if self.end_pending is None and (outcome := self._tick(now)) is not None:
                return outcome
            if self.unrecorded and now >= self.retry_charges_at:
                outcome = self._retry_unrecorded()
                if outcome is not None:
                    return outcome
            # Woken at the deadline; once past it, a dialect that waits for its end (Live's
            # session.closed) reads at the usual pace.
            wait = min(POLL_SECONDS, job.ends_at - now) if now < job.ends_at else POLL_SECONDS
            if (timer := self._next_timer()) is not None:
                wait = min(wait, max(timer - now, 0.0))
            if self.line_closed:  # nothing to read: wait for the end's next try
                self.sleep(max(min(self.end_retry_at - now, POLL_SECONDS), 0.0))
                continue
            try:
                event = self.events.recv(wait)
            except SidebandClosed as closed:
                if (outcome := self._closed(closed)) is not None:
                    return outcome
                continue
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

    # --- money ---------------------------------------------------------------------------

    def _charge(self, key: str, micros: int, model: str, known: bool) -> Charge | None:
        if not known:
            self.log.warning("no price for model: charged at the dearest", extra={"model": model})
            self.metrics.count("UnpricedModel", profile=self.job.profile)
        return self._record(key, micros, model)

    def _record(self, key: str, micros: int, model: str) -> Charge | None:
        """Charge one event (`key`), or bring a running total (`TOTAL` + counter) up to
        `micros`; None when DynamoDB did not take it (kept, tried again)."""
        try:
            if key.startswith(TOTAL):
                charge = self.meter.charge_total(
                    call_id=self.job.call_id,
                    user=self.job.user,
                    counter=key.removeprefix(TOTAL),
                    total_micros=micros,
                    deadline=self.deadline,
                )
                self.totals[key] = max(self.totals.get(key, 0), micros)
            else:
                charge = self.meter.charge(
                    call_id=self.job.call_id,
                    user=self.job.user,
                    event_key=key,
                    micros=micros,
                    deadline=self.deadline,
                )
        except TokenVendorError as exc:
            # Not metered is not free: the call goes on, the charge is kept and tried again
            # (counted once whoever records it), the failure is counted and alarmed. A running
            # total kept is replaced by a later one (it includes it).
            first = key not in self.unrecorded
            self.unrecorded[key] = (max(micros, self.unrecorded.get(key, (0, ""))[0]), model)
            if first:
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
            # A running total not recorded lost only what it adds to the last one recorded.
            lost = sum(
                micros - self.totals.get(key, 0) for key, (micros, _) in self.unrecorded.items()
            )
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
        """After a charge: at the budget (the dialect says when), the goodbye is asked for."""
        if charge is None or self.goodbye is not None:
            return None
        day = charge.day
        if day is None:  # recorded, but the day's totals were not read: the next charge reads
            self.log.warning("day's spend not read: budget checked at the next charge")
            return None
        if not self._budget_reached(day):
            return None
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

    # --- the end -------------------------------------------------------------------------

    def _send(self, event: dict[str, Any]) -> bool:
        try:
            self.events.send(event)
        except SidebandClosed:
            return False
        return True

    def _end(self, reason: EndReason) -> Outcome | None:
        """End the call for `reason` (the first reason given stands). None while the end has
        not happened: its hangup or settle failed, and it is tried again from the loop."""
        if self.end_pending is not None:
            return None
        self.end_pending = reason
        self.log.info(
            "call ended",
            extra={
                "call_id": self.job.call_id,
                "reason": reason.value,
                "charged_usd": usd(self.charged_micros),
                "deviations": self.deviations_seen,
            },
        )
        return self._try_end()

    def _try_end(self) -> Outcome | None:
        """One try: hang up (unless the session is known to be over) and settle (core.ending).
        Settled only once OpenAI confirmed the hangup (or that the call was gone): otherwise
        the call may still be live, so it keeps its slot and its lease, the failure is counted
        (alarmed), and the end is tried again after a pause that doubles (to 8 s) while this
        watcher meters on."""
        job, reason = self.job, self.end_pending
        assert reason is not None
        try:
            ending = self.ender.end(
                user=job.user,
                call_id=job.call_id,
                reason=reason,
                deadline=Deadline(END_SECONDS),
                family=job.family,
                upstream_ended=self.upstream_ended,
            )
        except TokenVendorError as exc:
            self.log.error(
                "could not end the call: trying again",
                extra={"call_id": job.call_id, "error": str(exc), "retry_in": self.end_pause},
            )
            self.metrics.count("WatcherFailures", stage="end")
            self.end_retry_at = self.clock() + self.end_pause
            self.end_pause = min(self.end_pause * 2, END_RETRY_MAX_SECONDS)
            return None
        self.log.info(
            "call settled", extra={"call_id": job.call_id, "minutes_left": ending.minutes_left}
        )
        try:
            self.leases.end(job.call_id)
        except TokenVendorError:
            self.metrics.count("WatcherFailures", stage="lease")
        return Outcome.ENDED
