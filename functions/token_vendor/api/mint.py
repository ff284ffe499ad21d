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
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.deadline import Deadline
from ..core.errors import DependencyUnavailable, WindowUsage
from ..core.ids import UserId
from .auth import Caller
from .budget import Budget
from .policy import MintPlan, resolve
from .profiles import Profiles
from .quota import Grant
from .realtime import ClientSecret

MIN_SECONDS_FOR_QUOTA = 2.0  # below this, stop before spending: the mint would not fit


class Verifier(Protocol):
    """Port: checks a bearer token (`auth.JwtVerifier`)."""

    def verify(self, token: str, deadline: Deadline) -> Caller: ...


class Quota(Protocol):
    """Port: takes and returns quota units (`quota.QuotaStore`)."""

    def consume(self, user: UserId, deadline: Deadline) -> Grant: ...
    def give_back(self, grant: Grant, deadline: Deadline) -> bool: ...


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
    ) -> None:
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
        if not deadline.allows(MIN_SECONDS_FOR_QUOTA):
            raise DependencyUnavailable("budget", "too little time left to mint", retry_after=1)
        spend = self._budget.read(caller.user_hash, deadline)  # beside the quota's write
        grant = self._quota.consume(caller.user_hash, deadline)
        try:
            self._budget.check(spend, plan.profile, deadline)
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
