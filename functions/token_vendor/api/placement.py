"""Placing a server-owned call: everything taken is given back unless the call is placed with
a guaranteed end and (by default) a watcher.

Order matters for money, as for a mint: the request is checked before anything is spent; the
mint quota, then the call ledger's slot and minutes are taken before OpenAI is called, while
the day's spend is read beside them (a budget that cannot pay for one more response gives
them back: 429). Then, in parallel: the ledger records OpenAI's call id, Scheduler takes the
call's deadline and its backstop, and the call's watcher is started. A call exists only with
all of that: if any of it fails, or anything unexpected happens at any step, the call is hung
up and everything taken is given back (503, or the error's own status), so no request can
leave a slot, minutes or a mint unit held by a call that never existed.

The answer waits (WATCHER_ANSWER_WAIT_SECONDS, 3 s by default) until the watcher says it holds
the call's sideband and has put the profile's session in force: from then on every response
is metered and every change the browser makes is seen. A watcher that is later than that is
not waited for (it may be cold); the call is answered, and the watcher's own attach window and
the backstop schedule still end it if no watcher ever holds it.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.deadline import Deadline
from ..core.ending import Upstream as EndingUpstream
from ..core.errors import (
    ConfigError,
    DependencyError,
    DependencyUnavailable,
    InvalidRequest,
    ProfileNotInPlan,
)
from ..core.ids import CallId, UserId
from ..core.jobs import watch_event
from ..core.lease import LeaseState
from ..core.ledger import Reservation
from ..core.settings import CallLimits
from .auth import Caller
from .budget import Budget
from .mint import MIN_SECONDS_FOR_QUOTA, Quota, take_unit
from .plans import Plan
from .policy import CallPlan, resolve_call, resolve_live
from .profiles import Profiles
from .quota import Grant
from .realtime import PlacedCall
from .schedule import call_deadline, fire_time

MAX_SDP_BYTES = 32 * 1024
# Time kept back from OpenAI's call for what must follow it: the ledger's record and the
# schedules (in parallel, one attempt each), and a hangup if any fails.
SECONDS_AFTER_UPSTREAM = 4.0
# The backstop fires after the watcher's own attach window and this much more: a watcher that
# gives up ends its call itself first.
BACKSTOP_MARGIN_SECONDS = 10
# How often the answer looks for the watcher's attach: every 50 ms for the first second, when
# a watcher attaches (its Invoke, its lease, a new WebSocket to OpenAI: over a network 100 to
# 300 ms), then less often. Growing steps (0.1, 0.15, 0.25) lost up to a step after the attach.
WATCH_POLLS = (0.02, 0.03, *(0.05,) * 19, 0.1, 0.25)
_SDP_LINE = re.compile(r"^[a-z]=[^\x00]*$")


class Ledger(Protocol):  # the call ledger (core.ledger.CallLedger)
    def now(self) -> float: ...
    def admit(
        self,
        user: UserId,
        ends_at: int,
        deadline: Deadline,
        family: str = "realtime",
        limits: CallLimits | None = None,
    ) -> Reservation: ...
    def record(self, reservation: Reservation, call_id: CallId, deadline: Deadline) -> None: ...
    def release(self, reservation: Reservation, deadline: Deadline) -> bool: ...


class Creator(Protocol):  # OpenAI's side (api.realtime.RealtimeApi, api.live.LiveApi)
    def create(self, plan: CallPlan, sdp: str, user: UserId, deadline: Deadline) -> PlacedCall:
        """Never retried: a retry could allocate (and bill) a second call."""


class Upstream(Creator, EndingUpstream, Protocol):  # a Realtime call's: it hangs up too
    pass


# Kept for the calls use case's name of the Realtime side.
RealtimeCalls = Upstream


class Scheduler(Protocol):  # the call's deadline and backstop (api.schedule.HangupScheduler)
    def create(
        self,
        *,
        call_id: CallId,
        user: UserId,
        at: int,
        function_arn: str,
        deadline: Deadline,
        action: str = "hangup",
        family: str = "realtime",
    ) -> None: ...
    def delete(self, call_id: CallId, deadline: Deadline, action: str = "hangup") -> bool: ...


class Watchers(Protocol):  # starts a call's watcher (api.starter.WatcherStarter)
    def start(self, event: dict[str, Any]) -> bool: ...


class Leases(Protocol):  # who watches a call (core.lease.LeaseStore)
    def state(self, call_id: CallId) -> LeaseState: ...


@dataclass(frozen=True)
class Terms:
    """How calls are placed: the Scheduler's precision, and the watcher's rules."""

    precision: int  # seconds: Scheduler fires an at() schedule within this unit
    attach_seconds: float = 30.0  # a watcher's attach window (WATCHER_ATTACH_SECONDS)
    answer_wait: float = 3.0  # WATCHER_ANSWER_WAIT_SECONDS
    end_unwatched: bool = True  # UNWATCHED_CALLS=end (the default) or allow


@dataclass(frozen=True)
class Placed:
    plan: CallPlan
    call: PlacedCall
    reservation: Reservation
    windows: Any  # the mint quota's windows, for the RateLimit headers
    # Whether the answer went out with the call's watcher attached (None: no watchers here).
    watched: bool | None = None

    @property
    def location(self) -> str:
        route = "/v1/live/sessions" if self.plan.family == "live" else "/v1/realtime/calls"
        return f"{route}/{self.call.call_id}"


@dataclass
class Taken:
    """What a call setup holds so far, given back (in reverse) if it does not finish."""

    grant: Grant
    reservation: Reservation | None = None
    call: PlacedCall | None = None
    scheduled: list[str] = field(default_factory=list)  # the schedules' actions
    budget_micros: int | None = None  # the plan's budget, told to the call's watcher


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


class Placement:
    def __init__(
        self,
        *,
        profiles: Profiles,
        quota: Quota,
        ledger: Ledger,
        realtime: Upstream,
        scheduler: Scheduler,
        budget: Budget,
        executor: Executor,
        terms: Terms,
        watchers: Watchers | None = None,
        leases: Leases | None = None,
        live: Creator | None = None,
        live_closer: EndingUpstream | None = None,
        log: logging.Logger | Any = None,
        sleep: Callable[[float], None] = time.sleep,
        plan: Plan | None = None,
        plan_budget: bool = False,
    ) -> None:
        self._plan = plan
        # With a plans file, each call's watcher is told its plan's budget (its own
        # SPEND_LIMITS is the deploy's, not the plan's).
        self._plan_budget = plan_budget
        self._creators: dict[str, Creator] = {"realtime": realtime}
        self._enders: dict[str, EndingUpstream] = {"realtime": realtime}
        if live is not None and live_closer is not None:
            self._creators["live"], self._enders["live"] = live, live_closer
        self._profiles = profiles
        self._quota = quota
        self._ledger = ledger
        self._scheduler = scheduler
        self._budget = budget
        self._executor = executor
        self._terms = terms
        self._watchers = watchers
        self._leases = leases
        self._log = log or logging.getLogger(__name__)
        self._sleep = sleep

    def place(
        self,
        caller: Caller,
        sdp: str,
        session: dict[str, Any],
        profile: str | None,
        function_arn: str,
        deadline: Deadline,
    ) -> Placed:
        """A Realtime call: the offer, the `session` part and the `profile` query parameter."""
        plan = resolve_call(self._profiles, session, profile, caller.scopes)
        return self._place(caller, plan, sdp, function_arn, deadline)

    def place_live(
        self,
        caller: Caller,
        body: dict[str, Any],
        profile: str | None,
        function_arn: str,
        deadline: Deadline,
    ) -> Placed:
        """A GPT-Live session: OpenAI's create body (`session`, `transport`) and the `profile`
        query parameter."""
        plan, sdp = resolve_live(self._profiles, body, profile, caller.scopes)
        check_sdp(sdp)  # every refusal of the request comes before the deploy's own failure
        if "live" not in self._creators:  # only the watcher's function can close one
            raise ConfigError(["GPT-Live sessions need the call watcher (WATCHER_FUNCTION_NAME)"])
        return self._place(caller, plan, sdp, function_arn, deadline)

    def _place(
        self, caller: Caller, plan: CallPlan, sdp: str, function_arn: str, deadline: Deadline
    ) -> Placed:
        check_sdp(sdp)
        user_plan = self._plan
        if user_plan is not None and not user_plan.allows(plan.profile.name):
            raise ProfileNotInPlan(plan.profile.name, user_plan.name)
        if not deadline.allows(MIN_SECONDS_FOR_QUOTA + SECONDS_AFTER_UPSTREAM):
            raise DependencyUnavailable("budget", "too little time left to place a call", 1)
        user = caller.user_hash
        spend = self._budget.read(user, deadline)  # beside the admission: one step less
        now = self._ledger.now()
        ends_at = call_deadline(now, plan.profile.max_call_seconds, self._terms.precision)
        if user_plan is None:
            taken = Taken(self._quota.consume(user, deadline))
        else:
            grant = take_unit(self._quota, self._budget, user_plan, user, spend, deadline, now)
            taken = Taken(grant)
        try:
            # The controls were read beside the mint quota's write: the admission (which
            # waits for that write anyway) is decided under the user's overrides.
            effective = user_plan
            if user_plan is not None and spend is not None:
                controls = self._budget.wait(spend, deadline).controls
                effective = user_plan.with_controls(controls, now)
            limits = effective.call_limits if effective is not None else None
            taken.reservation = self._ledger.admit(user, ends_at, deadline, plan.family, limits)
            self._budget.check(
                spend,
                plan.profile,
                deadline,
                effective.spend_limits.user_micros if effective is not None else None,
            )
            # The plan's own budget, not the override's: the watcher applies the overrides
            # itself at every poll, so one that expires or is cleared stops counting mid-call.
            taken.budget_micros = (
                user_plan.spend_limits.user_micros
                if user_plan is not None and self._plan_budget
                else None
            )
            taken.call = self._creators[plan.family].create(
                plan, sdp, user, deadline.shortened(SECONDS_AFTER_UPSTREAM)
            )
            self._guarantee_end(plan, taken, function_arn, deadline)
            watched = self._wait_for_watcher(taken.call.call_id, deadline)
        except BaseException:  # anything, expected or not: nothing stays held
            self._give_back(taken, deadline)
            raise
        return Placed(plan, taken.call, taken.reservation, taken.grant.windows, watched)

    # --- the call's end, guaranteed ------------------------------------------------------

    def _guarantee_end(
        self, plan: CallPlan, taken: Taken, function_arn: str, deadline: Deadline
    ) -> None:
        """The ledger records the call while Scheduler takes its deadline and backstop and its
        watcher starts: one round trip of wall time. Any of them failing raises."""
        call, reservation = taken.call, taken.reservation
        assert call is not None and reservation is not None
        schedules = {"hangup": fire_time(reservation.ends_at, self._terms.precision)}
        backstop = self._backstop_time(reservation)
        if self._watchers is not None and backstop is not None:
            schedules["backstop"] = backstop
        pending = {
            action: self._executor.submit(
                self._scheduler.create,
                call_id=call.call_id,
                user=reservation.user,
                at=at,
                function_arn=function_arn,
                deadline=deadline,
                action=action,
                family=plan.family,
            )
            for action, at in schedules.items()
        }
        if plan.family == "live":  # each WebRTC create bills 15 s up front: charged at once
            pending["charge"] = self._executor.submit(
                self._budget.charge_up_front, plan, call.call_id, reservation.user, deadline
            )
        started = self._executor.submit(
            self._start_watcher, plan, call, reservation, taken.budget_micros
        )
        # Whatever goes wrong here, expected or not, counts as a failure: the call must not
        # outlive this request without a scheduled end.
        failures: list[DependencyError] = []
        try:
            self._ledger.record(reservation, call.call_id, deadline)
        except Exception as exc:
            failures.append(_as_dependency_error(exc, "quota_store"))
        for action, future in pending.items():
            failure = _failure(
                future, "spend_ledger" if action == "charge" else "scheduler", deadline
            )
            if failure is not None:
                failures.append(failure)
            elif action != "charge":
                taken.scheduled.append(action)
        if (failure := _failure(started, "watcher", deadline)) is not None:
            failures.append(failure)
        if failures:
            first = failures[0]
            raise DependencyUnavailable(first.dependency, first.reason, retry_after=5)

    def _backstop_time(self, reservation: Reservation) -> int | None:
        """When the backstop fires: the next Scheduler unit after the watcher's attach window
        (and a margin); None when the call's deadline comes first anyway."""
        precision = self._terms.precision
        after = reservation.started_at + self._terms.attach_seconds + BACKSTOP_MARGIN_SECONDS
        at = (int(after) // precision + 1) * precision
        return at if at < fire_time(reservation.ends_at, precision) else None

    def _start_watcher(
        self,
        plan: CallPlan,
        call: PlacedCall,
        reservation: Reservation,
        budget_micros: int | None = None,
    ) -> None:
        """Raises when the start was refused and unwatched calls are ended (the default)."""
        if self._watchers is None:
            return
        event = watch_event(
            call_id=call.call_id,
            user=reservation.user,
            profile=plan.profile.name,
            session=plan.session,
            on_session_change=plan.profile.on_session_change,
            ends_at=reservation.ends_at,
            family=plan.family,
            started_at=reservation.started_at,
            budget_micros=budget_micros,
        )
        if self._watchers.start(event):
            return
        if self._terms.end_unwatched:
            raise DependencyUnavailable("watcher", "the call's watcher could not be started")
        self._log.error("call not watched: UNWATCHED_CALLS=allow lets it run to its deadline")

    def _wait_for_watcher(self, call_id: CallId, deadline: Deadline) -> bool | None:
        """Whether the watcher holds the call's sideband, its profile in force, by the time
        the answer goes out (None: no watchers here, or no wait asked for)."""
        if self._watchers is None or self._leases is None or self._terms.answer_wait <= 0:
            return None
        # The answer itself needs a moment of the request's time.
        until = Deadline(min(self._terms.answer_wait, deadline.remaining() - 0.5))
        for pause in itertools.chain(WATCH_POLLS, itertools.repeat(WATCH_POLLS[-1])):
            try:
                state = self._leases.state(call_id)
            except DependencyError as exc:  # a late answer is worse than an unconfirmed one
                self._log.warning("watcher's attach not read", extra={"error": str(exc)})
                return False
            if state.attached and not state.ended:
                return True
            if not until.allows(pause):
                return False
            self._sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- giving back -------------------------------------------------------------------------

    def _give_back(self, taken: Taken, deadline: Deadline) -> None:
        """Everything a failed setup took, best effort each: the upstream call (hung up), its
        schedules, its slot and minutes, its mint unit."""
        hung_up = (
            self._hang_up_quietly(taken.call.call_id, taken.reservation, deadline)
            if taken.call
            else None
        )
        for action in taken.scheduled:
            assert taken.call is not None
            self._scheduler.delete(taken.call.call_id, deadline, action)
        released = (
            self._ledger.release(taken.reservation, deadline)
            if taken.reservation is not None
            else None
        )
        returned = self._quota.give_back(taken.grant, deadline)
        self._log.info(
            "call not placed; everything taken given back",
            extra={"hung_up": hung_up, "released": released, "returned": returned,
                   "schedules": taken.scheduled},
        )  # fmt: skip

    def _hang_up_quietly(
        self, call_id: CallId, reservation: Reservation | None, deadline: Deadline
    ) -> bool:
        family = reservation.family if reservation is not None else "realtime"
        try:
            user = reservation.user if reservation is not None else None
            return self._enders[family].hang_up(call_id, deadline, user)
        except Exception as exc:
            # Our own errors say what failed; anything else is named by its type only (a
            # library's message may carry a URL).
            reason = str(exc) if isinstance(exc, DependencyError) else type(exc).__name__
            self._log.error(
                "hangup failed; OpenAI ends the call at its own cap", extra={"reason": reason}
            )
            return False


def _failure(future: Future[None], dependency: str, deadline: Deadline) -> DependencyError | None:
    try:
        future.result(timeout=max(deadline.remaining(), 0.01))
    except FutureTimeout:
        return DependencyUnavailable(dependency, "no answer in time", 5)
    except Exception as exc:
        return _as_dependency_error(exc, dependency)
    return None


def _as_dependency_error(exc: Exception, dependency: str) -> DependencyError:
    if isinstance(exc, DependencyError):
        return exc
    return DependencyUnavailable(dependency, f"unexpected {type(exc).__name__}", retry_after=5)
