"""Domain errors of the token vendor. They say what happened; `problems` maps them to HTTP.

TokenVendorError
+-- ConfigError                  configuration cannot be used (fails the cold start)
+-- WrongDoor                    the request skipped the API's public door (its distribution)
+-- AuthError                    the caller is not who they must be
|   +-- InvalidToken             token missing, malformed, forged, expired, not for us
|   +-- InsufficientScope        valid token, lacking a scope the request needs
+-- RequestError                 the request body is not acceptable
|   +-- InvalidRequest           bad JSON, bad value, a field the policy does not allow
|   +-- BodyTooLarge
|   +-- UnsupportedMediaType
|   +-- ProfileNotPermitted      the caller may not use that profile
|   |   +-- ProfileNotInPlan     ... because their plan does not include it
|   +-- WrongFlow                the profile does not serve this route; names the one it does
+-- QuotaExceeded                the caller's own quota is spent
+-- GlobalQuotaExceeded          everyone's quota together (GLOBAL_QUOTAS) is spent
+-- CallLimitExceeded            too many live calls, or too few call minutes left today
+-- CallNotFound                 no such call of this caller (whoever else's it may be)
+-- UserBlocked                  the operator has blocked this user (`make ops block`)
+-- DependencyError              we could not do our part; never the caller's fault
    +-- DependencyUnavailable    a dependency is down or throttling (retry later)
    |   +-- DependencyMisconfigured  what it holds is unusable: the operator must act
    +-- UpstreamRejected         OpenAI refused our request
    +-- UpstreamBadResponse      OpenAI answered something we will not pass on
    +-- UpstreamTimeout          OpenAI did not answer in time
"""

from __future__ import annotations

from dataclasses import dataclass


class TokenVendorError(Exception):
    """Base of every expected failure."""


class ConfigError(TokenVendorError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration: " + "; ".join(problems))


class WrongDoor(TokenVendorError):
    """A request that did not come through the page's distribution, the API's one public
    door (so WAF never saw it): refused before its token is read. `reason` is a short word
    for logs and metrics ("missing" or "mismatch"); the header's value is never kept."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"not through the public door: {reason}")


class AuthError(TokenVendorError):
    def __init__(self, reason: str, description: str) -> None:
        # `reason` is a short machine word for logs and metrics; `description` is safe to show.
        self.reason = reason
        self.description = description
        super().__init__(f"{reason}: {description}")


class InvalidToken(AuthError):
    pass


class InsufficientScope(AuthError):
    def __init__(self, reason: str, description: str, scopes: tuple[str, ...] = ()) -> None:
        super().__init__(reason, description)
        self.scopes = scopes


class RequestError(TokenVendorError):
    def __init__(self, detail: str, field: str | None = None) -> None:
        self.detail = detail
        self.field = field
        super().__init__(detail)


class InvalidRequest(RequestError):
    pass


class BodyTooLarge(RequestError):
    pass


class UnsupportedMediaType(RequestError):
    pass


class ProfileNotPermitted(RequestError):
    def __init__(self, profile: str, scopes: tuple[str, ...]) -> None:
        super().__init__(
            f"the profile '{profile}' needs scopes the token does not carry", "profile"
        )
        self.profile = profile
        self.scopes = scopes


class ProfileNotInPlan(ProfileNotPermitted):
    def __init__(self, profile: str, plan: str) -> None:
        super().__init__(profile, ())
        self.detail = f"Your plan '{plan}' does not include the profile '{profile}'."
        self.plan = plan


class WrongFlow(RequestError):
    def __init__(self, profile: str, flow: str, route: str) -> None:
        what = {"calls": "server-owned calls", "live": "GPT-Live sessions"}.get(
            flow, "client secrets"
        )
        super().__init__(
            f"The profile '{profile}' does not serve {what}; use POST {route}.", "profile"
        )
        self.route = route


@dataclass(frozen=True)
class WindowUsage:
    """One quota window as the caller sees it: for the RateLimit headers."""

    name: str
    limit: int
    seconds: int
    remaining: int
    reset_after: int


class QuotaExceeded(TokenVendorError):
    """`scope` is what the quota counts: "mint" (mints and calls placed, QUOTAS), or a route
    with its own per-user windows ("list", "hangup": CALL_ROUTE_QUOTAS)."""

    def __init__(
        self,
        retry_after: int,
        windows: tuple[WindowUsage, ...],
        violated: str,
        scope: str = "mint",
    ) -> None:
        self.retry_after = retry_after
        self.windows = windows
        self.violated = violated
        self.scope = scope
        super().__init__(f"{scope} quota '{violated}' exhausted; retry after {retry_after}s")


class GlobalQuotaExceeded(TokenVendorError):
    """Not the caller's doing: the service's own cap on all mints. The caller's unit is back."""

    def __init__(self, retry_after: int, violated: str) -> None:
        self.retry_after = retry_after
        self.violated = violated
        super().__init__(f"global quota '{violated}' exhausted; retry after {retry_after}s")


class CallLimitExceeded(TokenVendorError):
    """`limit` is "concurrent" or "minutes"; `detail` is a sentence for the person."""

    def __init__(self, limit: str, detail: str, retry_after: int, minutes_left: int) -> None:
        self.limit = limit
        self.detail = detail
        self.retry_after = retry_after
        self.minutes_left = minutes_left
        super().__init__(f"call limit '{limit}' reached; retry after {retry_after}s")


class SpendLimitExceeded(TokenVendorError):
    """Today's spend budget (the user's, or everyone's: the operator's kill switch) is used
    up; `retry_after` is the time to the next UTC day."""

    def __init__(self, budget: str, retry_after: int) -> None:
        self.budget = budget
        self.retry_after = retry_after
        super().__init__(f"spend budget '{budget}' used up; retry after {retry_after}s")

    @property
    def detail(self) -> str:
        hours = max(round(self.retry_after / 3600), 1)
        whose = "Your" if self.budget == "user" else "The service's"
        return (
            f"{whose} budget for calls today is used up. It renews at midnight UTC, "
            f"in about {hours} hour{'s' if hours != 1 else ''}."
        )


class CallNotFound(TokenVendorError):
    pass


class UserBlocked(TokenVendorError):
    """The operator blocked this user; the reason stays in the table and the logs."""


class DependencyError(TokenVendorError):
    def __init__(self, dependency: str, reason: str, status: int | None = None) -> None:
        self.dependency = dependency
        self.reason = reason
        # The dependency's own HTTP status, when it answered with one (never shown to callers).
        self.status = status
        super().__init__(f"{dependency}: {reason}")


class DependencyUnavailable(DependencyError):
    def __init__(
        self, dependency: str, reason: str, retry_after: int = 5, status: int | None = None
    ) -> None:
        super().__init__(dependency, reason, status)
        self.retry_after = retry_after


class DependencyMisconfigured(DependencyUnavailable):
    """Still a 503 for the caller; logged at ERROR, because only the operator can fix it."""


class UpstreamRejected(DependencyError):
    pass


class UpstreamBadResponse(DependencyError):
    pass


class UpstreamTimeout(DependencyError):
    pass
