"""The use case: a verified caller asks for a client secret; policy, quota and budget, then
OpenAI.

Nothing here knows HTTP. Order matters for money: the policy check comes before the quota
(a refused request costs nothing); the day's spend is read beside the quota's write and a
budget that cannot pay for one more response refuses the mint, as it refuses a call (a
secret's sessions are metered by nobody: the budget is checked before, or never); a mint that
fails for reasons not the caller's (a dependency, or a bug) gives its unit back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.deadline import Deadline
from ..core.errors import (
    DependencyUnavailable,
    ProfileNotInPlan,
    QuotaExceeded,
    UserBlocked,
    WindowUsage,
)
from ..core.ids import UserId
from .auth import Caller
from .budget import Budget, Standing
from .plans import Plan
from .policy import MintPlan, resolve
from .profiles import Profiles
from .quota import Grant
from .realtime import ClientSecret
from .windows import QuotaWindow

MIN_SECONDS_FOR_QUOTA = 2.0  # below this, stop before spending: the mint would not fit


class Verifier(Protocol):
    """Port: checks a bearer token (`auth.JwtVerifier`)."""

    def verify(self, token: str, deadline: Deadline) -> Caller: ...


class Quota(Protocol):
    """Port: takes and returns quota units (`quota.QuotaStore`)."""

    def consume(
        self,
        user: UserId,
        deadline: Deadline,
        windows: tuple[QuotaWindow, ...] | None = None,
    ) -> Grant: ...
    def give_back(self, grant: Grant, deadline: Deadline) -> bool: ...


def take_unit(
    quota: Quota,
    budget: Budget,
    plan: Plan,
    user: UserId,
    pending: Future[Standing] | None,
    deadline: Deadline,
    now: float,
) -> Grant:
    """One mint unit under the user's plan, or under their override of its quotas.

    The controls are read beside this write, so the write cannot wait for them: it counts
    against the plan, and only a user with a quota override pays more. Refused, the unit is
    counted again under the override (one more write); granted, it is given back and counted
    under the override (two more). A blocked user refused here learns of the block, not the
    quota; one granted here is refused by the budget's check that follows (the unit back)."""
    try:
        grant = quota.consume(user, deadline)
    except QuotaExceeded:
        standing = budget.wait(pending, deadline) if pending is not None else None
        if standing is None:
            raise
        if standing.controls.blocked:
            raise UserBlocked() from None
        if standing.controls.override("quotas", now) is None:
            raise
        return quota.consume(user, deadline, plan.with_controls(standing.controls, now).quotas)
    if pending is None:
        return grant
    try:
        standing = budget.wait(pending, deadline)
    except BaseException:
        quota.give_back(grant, deadline)
        raise
    if standing.controls.override("quotas", now) is None:
        return grant
    quota.give_back(grant, deadline)
    return quota.consume(user, deadline, plan.with_controls(standing.controls, now).quotas)


class Minter(Protocol):
    """Port: mints a client secret upstream (`realtime.RealtimeApi`)."""

    def create_client_secret(
        self, body: dict[str, Any], safety_identifier: str, deadline: Deadline
    ) -> ClientSecret: ...


@dataclass(frozen=True)
class Minted:
    """A successful mint: the caller, the plan, the secret and the quota left."""

    caller: Caller
    plan: MintPlan
    secret: ClientSecret
    windows: tuple[WindowUsage, ...]
    webrtc_url: str
    grant: Grant

    def response_body(self) -> dict[str, Any]:
        """OpenAI's response shape, instructions hidden unless the profile shows them."""
        session = dict(self.secret.session)
        if not self.plan.profile.expose_instructions:
            session.pop("instructions", None)
        return {
            "value": self.secret.value,
            "expires_at": self.secret.expires_at,
            "session": session,
            "webrtc_url": self.webrtc_url,
        }


class TokenVendor:
    """The use case: a verified caller asks for a client secret; policy, quota, then OpenAI."""

    def __init__(
        self,
        *,
        verifier: Verifier,
        profiles: Profiles,
        quota: Quota,
        minter: Minter,
        webrtc_url: str,
        budget: Budget,
        log: logging.Logger | Any = None,
        plan: Plan | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._plan = plan
        self._clock = clock
        self._budget = budget
        self._verifier = verifier
        self._profiles = profiles
        self._quota = quota
        self._minter = minter
        self._webrtc_url = webrtc_url
        self._log = log or logging.getLogger(__name__)

    def authenticate(self, token: str, deadline: Deadline) -> Caller:
        return self._verifier.verify(token, deadline)

    def mint(self, caller: Caller, request: dict[str, Any], deadline: Deadline) -> Minted:
        plan = resolve(self._profiles, request, caller.scopes)
        user_plan = self._plan
        if user_plan is not None and not user_plan.allows(plan.profile.name):
            raise ProfileNotInPlan(plan.profile.name, user_plan.name)
        if not deadline.allows(MIN_SECONDS_FOR_QUOTA):
            raise DependencyUnavailable("budget", "too little time left to mint", retry_after=1)
        spend = self._budget.read(caller.user_hash, deadline)  # beside the quota's write
        now = self._clock()
        if user_plan is None:
            grant = self._quota.consume(caller.user_hash, deadline)
        else:
            grant = take_unit(
                self._quota, self._budget, user_plan, caller.user_hash, spend, deadline, now
            )
        try:
            standing = self._budget.wait(spend, deadline) if spend is not None else None
            limit = None
            if standing is not None and user_plan is not None:
                limit = user_plan.with_controls(standing.controls, now).spend_limits.user_micros
            self._budget.check(spend, plan.profile, deadline, limit)
            secret = self._minter.create_client_secret(
                plan.upstream_body, caller.user_hash, deadline
            )
        except Exception:  # a spent budget, a dependency's failure or a bug: not paid for
            returned = self._quota.give_back(grant, deadline)
            self._log.info("quota unit returned after failed mint", extra={"returned": returned})
            raise
        return Minted(caller, plan, secret, grant.windows, self._webrtc_url, grant)

    def give_back(self, minted: Minted, deadline: Deadline) -> bool:
        """A secret minted but never delivered (the response could not be built) is not paid."""
        return self._quota.give_back(minted.grant, deadline)
