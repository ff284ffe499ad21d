"""The watch event: what the token function (at a call's admission) or a watcher (at its
hand-over) tells the next watcher about a call. Both functions build it here and the watcher
reads it here, so the two sides cannot drift.

`{"action": "watch", "call_id", "user", "profile", "session", "on_session_change", "ends_at",
"handovers", "token"?, "api"?, "started_at"?}`: `token` is present only on a hand-over (the
lease names it; the successor takes the lease under a fresh token of its own); `api` is `live`
for a GPT-Live session; `started_at`, when the call was admitted (just before OpenAI created
it: a bound on how long it has run, for a budget kept by the clock).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Any

from .ids import CALL_ID, CallId, UserId

ON_SESSION_CHANGE = ("restore", "hangup")


class BadEvent(ValueError):
    """The event is not a watch event this code can act on; the message names the field."""


@dataclass(frozen=True)
class Job:
    """One call to watch, as its watcher is told about it."""

    call_id: CallId
    user: UserId
    profile: str
    session: dict[str, Any]  # the session the call was created with
    on_session_change: str  # "restore" or "hangup"
    ends_at: float  # epoch seconds: the server's deadline for the call
    token: str  # this watcher's lease token
    handovers: int = 0
    family: str = "realtime"  # the OpenAI API the call runs on: "realtime" or "live"
    started_at: float | None = None  # epoch seconds: admitted (None: not told)
    # The user's daily budget under their plan (micro-dollars; None: the watcher's own
    # SPEND_LIMITS). An operator's override, read while watching, replaces it.
    budget_micros: int | None = None

    def event(self, *, successor: str | None = None) -> dict[str, Any]:
        """The start event of this job's watcher: a first start, or (with `successor`, the
        token the lease now names) the start of the next watcher at a hand-over."""
        return watch_event(
            call_id=self.call_id,
            user=self.user,
            profile=self.profile,
            session=self.session,
            on_session_change=self.on_session_change,
            ends_at=self.ends_at,
            token=successor,
            handovers=self.handovers + (successor is not None),
            family=self.family,
            started_at=self.started_at,
            budget_micros=self.budget_micros,
        )

    def with_new_token(self) -> Job:
        return replace(self, token=new_token())


def watch_event(
    *,
    call_id: CallId,
    user: UserId,
    profile: str,
    session: dict[str, Any],
    on_session_change: str,
    ends_at: float,
    token: str | None = None,
    handovers: int = 0,
    family: str = "realtime",
    started_at: float | None = None,
    budget_micros: int | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "action": "watch",
        "call_id": call_id,
        "user": user,
        "profile": profile,
        "session": session,
        "on_session_change": on_session_change,
        "ends_at": ends_at,
        "handovers": handovers,
    }
    if family != "realtime":  # a Realtime call's event stays as it was
        event["api"] = family
    if started_at is not None:
        event["started_at"] = started_at
    if token is not None:
        event["token"] = token
    if budget_micros is not None:
        event["budget_micros"] = budget_micros
    return event


def parse_job(event: Any) -> tuple[Job, bool]:
    """The job, and whether this is a hand-over (the lease already names its token)."""
    if not isinstance(event, dict) or event.get("action") != "watch":
        raise BadEvent("not a watch event")
    call_id, user, profile = event.get("call_id"), event.get("user"), event.get("profile")
    # Every id the token function accepts from OpenAI's Location, `rtc_` or not.
    if not isinstance(call_id, str) or not CALL_ID.fullmatch(call_id):
        raise BadEvent("call_id")
    if not isinstance(user, str) or not user or not isinstance(profile, str):
        raise BadEvent("user or profile")
    session = event.get("session")
    if not isinstance(session, dict):
        raise BadEvent("session")
    on_change = event.get("on_session_change", "restore")
    if on_change not in ON_SESSION_CHANGE:
        raise BadEvent("on_session_change")
    ends_at = event.get("ends_at")
    if isinstance(ends_at, bool) or not isinstance(ends_at, int | float):
        raise BadEvent("ends_at")
    token = event.get("token")
    handovers = event.get("handovers", 0)
    if token is not None and not isinstance(token, str):
        raise BadEvent("token")
    if isinstance(handovers, bool) or not isinstance(handovers, int) or handovers < 0:
        raise BadEvent("handovers")
    family = event.get("api", "realtime")
    if family not in ("realtime", "live"):
        raise BadEvent("api")
    started_at = event.get("started_at")
    if started_at is not None and (
        isinstance(started_at, bool) or not isinstance(started_at, int | float)
    ):
        raise BadEvent("started_at")
    budget = event.get("budget_micros")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
        raise BadEvent("budget_micros")
    job = Job(
        call_id=CallId(call_id),
        user=UserId(user),
        profile=profile,
        session=session,
        on_session_change=on_change,
        ends_at=float(ends_at),
        token=token or new_token(),
        handovers=handovers,
        family=family,
        started_at=None if started_at is None else float(started_at),
        budget_micros=budget,
    )
    return job, token is not None


def new_token() -> str:
    return "w_" + secrets.token_hex(12)
