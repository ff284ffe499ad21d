"""The use case of server-owned calls: place a call for a verified caller, end it, list them.

Nothing here knows HTTP. Order matters for money, as for a mint: the request is checked
before anything is spent; the mint quota, then the call ledger, are taken before OpenAI is
called, while the day's spend is read beside them (a spent budget gives them back: 429);
whatever fails afterwards for reasons not the caller's gives back what was taken.
A call exists only with a guaranteed end: if its hangup cannot be scheduled or the ledger
cannot record it, it is hung up at once and the caller gets a 503.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Protocol

from .auth import Caller
from .deadline import Deadline
from .errors import CallNotFound, DependencyError, DependencyUnavailable, InvalidRequest
from .ledger import CallRecord, CallsView, Reservation, known_reason
from .openai_client import PlacedCall
from .policy import CallPlan, Profiles, resolve_call
from .schedule import call_deadline, fire_time
from .service import MIN_SECONDS_FOR_QUOTA, Quota
from .spend import ATTEMPT_SECONDS as SPEND_ATTEMPT_SECONDS
from .spend import DaySpend, SpendLimits
from .starter import watch_event

MAX_SDP_BYTES = 32 * 1024
# Time kept back from OpenAI's call for what must follow it: the ledger's record and the
# schedule (in parallel, one attempt each), and a hangup if either fails.
SECONDS_AFTER_UPSTREAM = 4.0
_SDP_LINE = re.compile(r"^[a-z]=[^\x00]*$")


class Ledger(Protocol):
    def now(self) -> float: ...
    def admit(self, user: str, ends_at: int, deadline: Deadline) -> Reservation: ...
    def record(self, reservation: Reservation, call_id: str, deadline: Deadline) -> None: ...
    def release(self, reservation: Reservation, deadline: Deadline) -> bool: ...
    def claim_end(self, user: str, call: CallRecord, reason: str, deadline: Deadline) -> bool: ...
    def replace_end(
        self, user: str, call: CallRecord, claimed: str, reason: str | None, deadline: Deadline
    ) -> bool: ...
    def settle(
        self, user: str, call: CallRecord, deadline: Deadline, reason: str
    ) -> int | None: ...
    def view(self, user: str, deadline: Deadline) -> CallsView: ...


class RealtimeCalls(Protocol):  # OpenAI's side of a call
    def create_call(
        self, sdp: str, session: dict[str, Any], safety_identifier: str, deadline: Deadline
    ) -> PlacedCall: ...
    def hang_up(self, call_id: str, deadline: Deadline) -> bool: ...


class Spend(Protocol):  # the spend ledger (spend.py)
    limits: SpendLimits

    def today(self, user: str, deadline: Deadline | None = None) -> DaySpend: ...


class Watchers(Protocol):  # starts a call's watcher (starter.py)
    def start(self, event: dict[str, Any]) -> bool: ...


class Scheduler(Protocol):
    def create(
        self, call_id: str, user: str, at: int, function_arn: str, deadline: Deadline
    ) -> None: ...
    def delete(self, call_id: str, deadline: Deadline) -> bool: ...


@dataclass(frozen=True)
class Placed:
    plan: CallPlan
    call: PlacedCall
    reservation: Reservation
    windows: Any  # the mint quota's windows, for the RateLimit headers

    @property
    def location(self) -> str:
        return f"/v1/realtime/calls/{self.call.call_id}"


@dataclass(frozen=True)
class Ended:
    call: CallRecord
    ended_at: int
    minutes_left: int
    settled: bool  # False: it had ended already (a repeated hangup)
    reason: str  # ledger.END_REASONS: why the call ended

    def body(self) -> dict[str, Any]:
        return {
            "id": self.call.id,
            "object": "realtime.call",
            "status": "ended",
            "started_at": self.call.started_at,
            "ended_at": self.ended_at,
            "end_reason": self.reason,
            "minutes_left_today": self.minutes_left,
        }


def check_sdp(sdp: str) -> str:
    """An SDP offer, roughly: RFC 8866 lines, `v=0` first, at least one media section."""
    if not sdp.strip():
        raise InvalidRequest("the SDP offer is empty", "sdp")
    if len(sdp.encode()) > MAX_SDP_BYTES:
        raise InvalidRequest(f"the SDP offer must be at most {MAX_SDP_BYTES} bytes", "sdp")
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    if (
        lines[0] != "v=0"
        or not any(line.startswith("m=") for line in lines)
        or not all(_SDP_LINE.match(line) for line in lines)
    ):
        raise InvalidRequest("the body is not an SDP offer", "sdp")
    return sdp


class CallService:
    def __init__(
        self,
        *,
        profiles: Profiles,
        quota: Quota,
        ledger: Ledger,
        realtime: RealtimeCalls,
        scheduler: Scheduler,
        precision: int,
        executor: Executor,
        log: logging.Logger | Any = None,
        spend: Spend | None = None,
        watchers: Watchers | None = None,
    ) -> None:
        self._spend = spend
        self._watchers = watchers
        self._profiles = profiles
        self._quota = quota
        self._ledger = ledger
        self._realtime = realtime
        self._scheduler = scheduler
        self._precision = precision
        self._executor = executor
        self._log = log or logging.getLogger(__name__)

    def place(
        self,
        caller: Caller,
        sdp: str,
        session: dict[str, Any],
        profile: str | None,
        function_arn: str,
        deadline: Deadline,
    ) -> Placed:
        plan = resolve_call(self._profiles, session, profile, caller.scopes)
        check_sdp(sdp)
        if not deadline.allows(MIN_SECONDS_FOR_QUOTA + SECONDS_AFTER_UPSTREAM):
            raise DependencyUnavailable("budget", "too little time left to place a call", 1)
        user = caller.user_hash
        # The spend is read beside the admission (one round trip of wall time less); a spent
        # budget then gives back what the admission took, before OpenAI is called.
        spend = self._read_spend(user, deadline)
        ends_at = call_deadline(self._ledger.now(), plan.profile.max_call_seconds, self._precision)
        grant = self._quota.consume(user, deadline)
        try:
            reservation = self._ledger.admit(user, ends_at, deadline)
        except Exception:
            self._quota.give_back(grant, deadline)
            raise
        try:
            _check_spend(spend, deadline)
        except Exception:
            self._ledger.release(reservation, deadline)
            self._quota.give_back(grant, deadline)
            raise
        try:
            call = self._realtime.create_call(
                sdp, plan.session, user, deadline.shortened(SECONDS_AFTER_UPSTREAM)
            )
        except DependencyError:
            released = self._ledger.release(reservation, deadline)
            returned = self._quota.give_back(grant, deadline)
            self._log.info(
                "call not placed; reservation returned",
                extra={"released": released, "returned": returned},
            )
            raise
        # The watcher starts beside the ledger's record and the schedule: one round trip.
        started = self._executor.submit(self._start_watcher, plan, call, reservation)
        self._guarantee_end(call, reservation, function_arn, deadline, grant)
        try:
            started.result(timeout=max(deadline.remaining(), 0.01))
        except Exception as exc:  # unwatched is not unended: the deadline still ends the call
            self._log.error("watcher not started", extra={"error": type(exc).__name__})
        return Placed(plan, call, reservation, grant.windows)

    def _read_spend(self, user: str, deadline: Deadline) -> Future[DaySpend] | None:
        """Today's spend, read on the executor; None when no budget is set (no read)."""
        if self._spend is None or not self._spend.limits.any:
            return None
        return self._executor.submit(self._spend.today, user, deadline)

    def _start_watcher(self, plan: CallPlan, call: PlacedCall, reservation: Reservation) -> None:
        if self._watchers is None:
            return
        event = watch_event(
            call.call_id,
            reservation.user,
            plan.profile.name,
            plan.session,
            plan.profile.on_session_change,
            reservation.ends_at,
        )
        if not self._watchers.start(event):
            self._log.error("call not watched; the deadline still ends it")

    def _guarantee_end(
        self,
        call: PlacedCall,
        reservation: Reservation,
        function_arn: str,
        deadline: Deadline,
        grant: Any,
    ) -> None:
        """Schedule the hangup while the ledger records the call (in parallel: one round trip
        of wall time). Either failing hangs the call up at once."""
        at = fire_time(reservation.ends_at, self._precision)
        scheduled = self._executor.submit(
            self._scheduler.create, call.call_id, reservation.user, at, function_arn, deadline
        )
        # Whatever goes wrong here, expected or not, the call must not outlive this request
        # without a scheduled end: every exception counts as a failure.
        failures: list[DependencyError] = []
        try:
            self._ledger.record(reservation, call.call_id, deadline)
        except Exception as exc:
            failures.append(_as_dependency_error(exc, "quota_store"))
        try:
            scheduled.result(timeout=max(deadline.remaining(), 0.01))
            is_scheduled = True
        except FutureTimeout:
            failures.append(DependencyUnavailable("scheduler", "no answer in time", 5))
            is_scheduled = False
        except Exception as exc:
            failures.append(_as_dependency_error(exc, "scheduler"))
            is_scheduled = False
        if not failures:
            return
        hung_up = self._hang_up_quietly(call.call_id, deadline)
        if is_scheduled:
            self._scheduler.delete(call.call_id, deadline)
        self._ledger.release(reservation, deadline)
        self._quota.give_back(grant, deadline)
        self._log.warning(
            "call hung up: its end could not be guaranteed",
            extra={"reason": str(failures[0]), "hung_up": hung_up},
        )
        first = failures[0]
        raise DependencyUnavailable(first.dependency, first.reason, retry_after=5)

    def _hang_up_quietly(self, call_id: str, deadline: Deadline) -> bool:
        try:
            return self._realtime.hang_up(call_id, deadline)
        except Exception as exc:
            # Our own errors say what failed; anything else is named by its type only (a
            # library's message may carry a URL).
            reason = str(exc) if isinstance(exc, DependencyError) else type(exc).__name__
            self._log.error(
                "hangup failed; OpenAI ends the call at its own cap", extra={"reason": reason}
            )
            return False

    def hang_up(self, caller: Caller, call_id: str, deadline: Deadline) -> Ended:
        """The owner ends a call (or, after its connection dropped, asks whether and why it
        ended: the page always hangs up through here). Anyone else learns nothing:
        CallNotFound. Idempotent; the answer says why the call ended."""
        _enough_time(deadline)
        user = caller.user_hash
        view = self._ledger.view(user, deadline)
        call = view.find(call_id)
        if call is None:
            raise CallNotFound(call_id)
        if call.done:
            reason = (
                known_reason(call.reason)
                if call.reason
                else self._unrecorded_end(user, call, deadline)
            )
            return Ended(call, call.ends_at, view.minutes_left, False, reason)
        # The owner's cause is claimed before the upstream hangup: that hangup closes the
        # call's sideband, and its watcher then ends the call as `closed`, usually before this
        # request's settle. The first cause recorded stands, so it must be the owner's.
        claimed = call.reason is None and self._claim_quietly(user, call, "hangup", deadline)
        try:
            ended_here = self._realtime.hang_up(call.id, deadline)
        except Exception:  # the call lives on: whoever ends it later says why
            if claimed:
                self._replace_quietly(user, call, None, deadline)
            raise  # and the schedule stays in place
        self._scheduler.delete(call.id, deadline)
        if call.reason is not None:
            # Whoever is ending it said why first; this settle's cause is then ignored.
            reason = known_reason(call.reason)
        elif ended_here:
            reason = "hangup"
        else:  # gone upstream before this hangup: not the owner's doing
            reason = self._unrecorded_end(user, call, deadline)
            if claimed:
                self._replace_quietly(user, call, reason, deadline)
        left = self._ledger.settle(user, call, deadline, reason)
        ended_at = min(int(self._ledger.now()), call.ends_at)
        if left is not None and (claimed or call.reason is not None):
            return Ended(call, ended_at, left, True, reason)
        # Settled meanwhile by whoever ended it (the watcher), or a cause recorded between
        # this request's read and its claim: their cause stands, and the minutes left are
        # the ones after their settle, not the ones read before it.
        after = self._ledger.view(user, deadline)
        settled = after.find(call.id)
        if settled is not None and settled.reason:
            reason = known_reason(settled.reason)
        return Ended(call, ended_at, after.minutes_left, left is not None, reason)

    def _claim_quietly(self, user: str, call: CallRecord, reason: str, deadline: Deadline) -> bool:
        """The owner's hangup is not held up by a ledger that cannot record its cause."""
        try:
            return self._ledger.claim_end(user, call, reason, deadline)
        except DependencyError as exc:
            self._log.warning("end cause not recorded", extra={"reason": str(exc)})
            return False

    def _replace_quietly(
        self, user: str, call: CallRecord, reason: str | None, deadline: Deadline
    ) -> None:
        """This request's `hangup` claim, replaced by `reason` (None: withdrawn)."""
        try:
            self._ledger.replace_end(user, call, "hangup", reason, deadline)
        except DependencyError as exc:
            self._log.warning("end cause not corrected", extra={"reason": str(exc)})

    def _unrecorded_end(self, user: str, call: CallRecord, deadline: Deadline) -> str:
        """Why a call ended that nobody said why for: it was gone upstream before this
        hangup (or settled without a cause). At its deadline, the deadline; with the user's
        (or everyone's) spend budget used up, the budget; otherwise the line closed."""
        if not call.done and self._ledger.now() >= fire_time(call.ends_at, self._precision):
            return "deadline"
        if self._spend is not None and self._spend.limits.any:
            try:
                if self._spend.today(user, deadline).refusal() is not None:
                    return "spend_limit"
            except DependencyError:
                pass  # the call is over either way; the cause is a courtesy
        return "closed"

    def scheduled_hangup(self, user: str, call_id: str, deadline: Deadline) -> str:
        """The deadline: record it as the cause, hang up (the guarantee), then settle if
        nobody has. An upstream failure raises, so the invocation is retried; a ledger that
        cannot be read first does not hold the hangup up."""
        _enough_time(deadline)
        read = False
        call = None
        try:
            call = self._ledger.view(user, deadline).find(call_id)
            read = True
            if call is not None and not call.done:
                self._ledger.claim_end(user, call, "deadline", deadline)
        except DependencyError as exc:
            self._log.warning("deadline not recorded before the hangup", extra={"reason": str(exc)})
        self._realtime.hang_up(call_id, deadline)
        if not read:
            call = self._ledger.view(user, deadline).find(call_id)
        if call is None or call.done:
            return "already-ended"
        left = self._ledger.settle(user, call, deadline, "deadline")
        return "settled" if left is not None else "already-ended"

    def list(self, caller: Caller, deadline: Deadline) -> dict[str, Any]:
        spend = self._read_spend(caller.user_hash, deadline)  # beside the ledger's read
        view = self._ledger.view(caller.user_hash, deadline)
        now = self._ledger.now()
        live = [c for c in view.calls if not c.done and c.ends_at > now]
        listing = {
            "object": "list",
            "data": [{"id": c.id, "started_at": c.started_at, "ends_at": c.ends_at} for c in live],
            "minutes_left_today": view.minutes_left,
        }
        if spend is not None:
            day = _spent(spend, deadline)
            # The caller's own figures only: what the whole service has left is the
            # operator's business (its kill switch still refuses calls with 429). USD with
            # micro-dollar precision; null when no per-user budget is set.
            left = day.user_left
            listing["spent_today_usd"] = day.user_micros / 1_000_000
            listing["spend_left_today_usd"] = None if left is None else left / 1_000_000
        return listing


def _check_spend(spend: Future[DaySpend] | None, deadline: Deadline) -> None:
    """A user (or the service) whose spend budget is used up places no call until the next
    UTC day. An unknown spend refuses too (503): a call costs money."""
    if spend is None:
        return
    refusal = _spent(spend, deadline).refusal()
    if refusal is not None:
        raise refusal


def _spent(spend: Future[DaySpend], deadline: Deadline) -> DaySpend:
    """The spend read on the executor, waited for one DynamoDB attempt at most (it began
    beside the admission, so it has had that long too): never the whole request's time,
    which must still hold the release and the give-back of a refused call."""
    try:
        return spend.result(timeout=deadline.cap(SPEND_ATTEMPT_SECONDS))
    except FutureTimeout:
        raise DependencyUnavailable("spend_ledger", "no answer in time", 2) from None


def _enough_time(deadline: Deadline) -> None:
    """A hangup reads the ledger, calls OpenAI and writes: not started without time for it."""
    if not deadline.allows(MIN_SECONDS_FOR_QUOTA + 1):
        raise DependencyUnavailable("budget", "too little time left to hang up", 1)


def _as_dependency_error(exc: Exception, dependency: str) -> DependencyError:
    if isinstance(exc, DependencyError):
        return exc
    return DependencyUnavailable(dependency, f"unexpected {type(exc).__name__}", retry_after=5)
