"""The use case of server-owned calls: place a call for a verified caller (`placement`), end
it (the owner's hangup, the deadline, the backstop: `core.ending`), list them.

Nothing here knows HTTP.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any, Protocol

from ..core.deadline import Deadline
from ..core.ending import CallEnder, CallRecord, Ending, EndReason
from ..core.ending import Ledger as EndingLedger
from ..core.ending import Upstream as EndingUpstream
from ..core.errors import DependencyError, DependencyUnavailable
from ..core.ids import CallId, UserId
from .auth import Caller
from .budget import Budget
from .mint import MIN_SECONDS_FOR_QUOTA, Quota
from .placement import (
    Creator,
    Leases,
    Placed,
    Placement,
    RealtimeCalls,
    Scheduler,
    Terms,
    Watchers,
)
from .placement import Ledger as PlacementLedger
from .plans import Plan
from .profiles import Profiles
from .schedule import fire_time


class Ledger(PlacementLedger, EndingLedger, Protocol):  # core.ledger.CallLedger
    """What placing and ending calls need of the call ledger."""


OBJECTS = {"realtime": "realtime.call", "live": "live.session"}


def ended_body(ending: Ending) -> dict[str, Any]:
    """The hangup route's answer: the call, ended, and why."""
    call = ending.call
    assert call is not None  # the owner's end always has the call's record
    return {
        "id": call.id,
        "object": OBJECTS[call.family],
        "status": "ended",
        "started_at": call.started_at,
        "ended_at": ending.ended_at,
        "end_reason": ending.reason.value,
        "minutes_left_today": ending.minutes_left,
    }


class CallService:
    def __init__(
        self,
        *,
        profiles: Profiles,
        quota: Quota,
        ledger: Ledger,
        realtime: RealtimeCalls,
        scheduler: Scheduler,
        executor: Executor,
        budget: Budget,
        terms: Terms,
        log: logging.Logger | Any = None,
        watchers: Watchers | None = None,
        leases: Leases | None = None,
        live: Creator | None = None,
        live_closer: EndingUpstream | None = None,
        plan: Plan | None = None,
        plan_budget: bool = False,
    ) -> None:
        self._plan = plan
        # With a plans file, the listing names the caller's plan (the page shows it).
        self._show_plan = plan_budget
        self._budget = budget
        self._ledger = ledger
        self._leases = leases
        self._terms = terms
        self._log = log or logging.getLogger(__name__)
        self._placement = Placement(
            profiles=profiles, quota=quota, ledger=ledger, realtime=realtime,
            scheduler=scheduler, budget=budget, executor=executor, terms=terms,
            watchers=watchers, leases=leases, live=live, live_closer=live_closer, log=self._log,
            plan=plan, plan_budget=plan_budget,
        )  # fmt: skip
        self._ender = CallEnder(
            ledger, realtime, live=live_closer, schedules=scheduler, infer=self._unrecorded_end,
            log=self._log,
        )  # fmt: skip

    def place(
        self,
        caller: Caller,
        sdp: str,
        session: dict[str, Any],
        profile: str | None,
        function_arn: str,
        deadline: Deadline,
    ) -> Placed:
        return self._placement.place(caller, sdp, session, profile, function_arn, deadline)

    def place_live(
        self,
        caller: Caller,
        body: dict[str, Any],
        profile: str | None,
        function_arn: str,
        deadline: Deadline,
    ) -> Placed:
        return self._placement.place_live(caller, body, profile, function_arn, deadline)

    def hang_up(self, caller: Caller, call_id: CallId, deadline: Deadline) -> Ending:
        """The owner ends a call (or, after its connection dropped, asks whether and why it
        ended: the page always hangs up through here). Anyone else learns nothing:
        CallNotFound. Idempotent; the answer says why the call ended."""
        _enough_time(deadline)
        return self._ender.end_for_owner(user=caller.user_hash, call_id=call_id, deadline=deadline)

    def scheduled_hangup(
        self, *, user: UserId, call_id: CallId, deadline: Deadline, family: str = "realtime"
    ) -> Ending:
        """The deadline: recorded as the cause, hung up (the guarantee), settled if nobody has.
        An upstream failure raises, so the invocation is retried."""
        _enough_time(deadline)
        return self._ender.end(
            user=user, call_id=call_id, reason=EndReason.DEADLINE, deadline=deadline,
            family=family,
        )  # fmt: skip

    def backstop(
        self, *, user: UserId, call_id: CallId, deadline: Deadline, family: str = "realtime"
    ) -> str:
        """Shortly after a call's watcher should have attached: a live call no watcher holds
        (its start lost in Lambda's queue, or its watcher gone) is ended as unwatched, unless
        the operator allows unwatched calls. The outcome: "watched", "already-ended",
        "allowed" or "ended"."""
        _enough_time(deadline)
        call = self._ledger.view(user, deadline).find(call_id)
        if call is None or call.done:
            return "already-ended"
        state = self._leases.state(call_id) if self._leases is not None else None
        if state is not None and (state.ended or state.attached):
            return "watched"
        if not self._terms.end_unwatched:
            self._log.error("call unwatched; UNWATCHED_CALLS=allow lets it run")
            return "allowed"
        ending = self._ender.end(
            user=user, call_id=call_id, reason=EndReason.UNWATCHED, deadline=deadline,
            family=family,
        )  # fmt: skip
        return "ended" if ending.settled else "already-ended"

    def _unrecorded_end(self, call: CallRecord, deadline: Deadline) -> EndReason:
        """Why a call ended that nobody said why for: it was gone upstream before the owner's
        hangup (or settled without a cause). At its deadline, the deadline; with the user's
        (or everyone's) spend budget used up, the budget; otherwise the line closed."""
        if not call.done and self._ledger.now() >= fire_time(call.ends_at, self._terms.precision):
            return EndReason.DEADLINE
        try:
            day = self._budget.today(call.user, deadline)
        except DependencyError:
            day = None  # the call is over either way; the cause is a courtesy
        if day is not None and day.refusal() is not None:
            return EndReason.SPEND_LIMIT
        return EndReason.CLOSED

    def list(self, caller: Caller, deadline: Deadline) -> dict[str, Any]:
        spend = self._budget.read(caller.user_hash, deadline)  # beside the ledger's read
        view = self._ledger.view(caller.user_hash, deadline)
        now = self._ledger.now()
        live = [c for c in view.calls if not c.done and c.ends_at > now]
        listing = {
            "object": "list",
            "data": [
                {
                    "id": c.id,
                    "object": OBJECTS[c.family],
                    "started_at": c.started_at,
                    "ends_at": c.ends_at,
                }
                for c in live
            ],
            "minutes_left_today": view.minutes_left,
        }
        standing = self._budget.wait(spend, deadline) if spend is not None else None
        if self._plan is not None and self._show_plan:
            # The caller's plan, as the page shows it, with the user's overrides in force.
            plan = self._plan
            if standing is not None:
                plan = plan.with_controls(standing.controls, now)
            listing["plan"] = {
                "name": plan.name,
                "title": plan.title or plan.name,
                "minutes_per_day": plan.call_limits.seconds_per_day // 60,
                "concurrent_calls": plan.call_limits.concurrent,
                "spend_per_day_usd": None
                if plan.spend_limits.user_micros is None
                else plan.spend_limits.user_micros / 1_000_000,
            }
            left_seconds = plan.call_limits.seconds_per_day - view.used_seconds
            listing["minutes_left_today"] = max(left_seconds, 0) // 60
        if standing is not None and standing.day is not None:
            day = standing.day
            if self._plan is not None and standing is not None:
                user_micros = self._plan.with_controls(standing.controls, now).spend_limits
                day = replace(day, limits=replace(day.limits, user_micros=user_micros.user_micros))
            # The caller's own figures only: what the whole service has left is the
            # operator's business (its kill switch still refuses calls with 429). USD with
            # micro-dollar precision; null when no per-user budget is set.
            left = day.user_left
            listing["spent_today_usd"] = day.user_micros / 1_000_000
            listing["spend_left_today_usd"] = None if left is None else left / 1_000_000
        return listing


def _enough_time(deadline: Deadline) -> None:
    """A hangup reads the ledger, calls OpenAI and writes: not started without time for it."""
    if not deadline.allows(MIN_SECONDS_FOR_QUOTA + 1):
        raise DependencyUnavailable("budget", "too little time left to hang up", 1)
