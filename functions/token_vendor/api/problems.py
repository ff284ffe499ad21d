"""The one mapping from domain errors to HTTP, and how each refusal is logged and counted.

`problem_for` gives the RFC 9457 problem document and its headers: clients get a stable
`type`, a human `title` and a generic `detail`; the precise reason goes to the logs. Nothing a
client sees quotes a token, a key or an upstream error verbatim, and what it quotes of the
request (a field's name) is echoed (`core.echo`): short, every hidden character replaced.
Every document also carries OpenAI's own error envelope, `"error": {"message", "type",
"param", "code"}`, so OpenAI's SDKs, pointed at this API, show why a request was refused.

`outcome_for` is the table beside it: for every refusal, its log line (level, outcome word,
fields: never a token, a key or a body; text echoed as in the document) and its metric, so
every route logs and counts a refusal the same way and no expected outcome is logged as an
error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.echo import SENTENCE_LIMIT, echo
from ..core.errors import (
    AuthError,
    BodyTooLarge,
    CallLimitExceeded,
    CallNotFound,
    ConfigError,
    DependencyError,
    DependencyMisconfigured,
    DependencyUnavailable,
    GlobalQuotaExceeded,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    ProfileNotInPlan,
    ProfileNotPermitted,
    QuotaExceeded,
    RequestError,
    SpendLimitExceeded,
    UnsupportedMediaType,
    UpstreamBadResponse,
    UpstreamRejected,
    UpstreamTimeout,
    UserBlocked,
    WindowUsage,
    WrongDoor,
    WrongFlow,
)

TYPE_BASE = "urn:realtime-token-vendor:problem:"
# A field's path: "session.audio.output." and a name echoed to ECHO_LIMIT characters fit.
FIELD_LIMIT = 80
REALM = "realtime-token-vendor"


@dataclass(frozen=True)
class Problem:
    """An RFC 9457 problem document with its status and extra headers."""

    status: int
    slug: str
    title: str
    detail: str
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        # The sites that quote a caller's name echo it; this is the net under them, so no
        # path that forgets can make a refusal large or put a control character in it.
        detail = echo(self.detail, SENTENCE_LIMIT)
        extra = {k: _quoted(k, v) for k, v in self.extra.items()}
        return {
            "type": TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": detail,
            **extra,
            "error": {
                "message": detail,
                "type": _openai_type(self.status),
                "param": extra.get("field"),
                "code": self.slug.replace("-", "_"),
            },
        }


def _quoted(name: str, value: Any) -> Any:
    """A problem's or a log line's member, as it may be shown: text echoed (a field's name
    to FIELD_LIMIT characters, anything else to a sentence's), other values as they are."""
    if not isinstance(value, str):
        return value
    return echo(value, FIELD_LIMIT if name == "field" else SENTENCE_LIMIT)


def _openai_type(status: int) -> str:
    """OpenAI's error `type` for a status, as its SDKs know them."""
    return {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "invalid_request_error" if status < 500 else "server_error")


def problem_for(error: Exception, product: str = "a usable client secret") -> Problem:
    """The single table. Order matters only where classes inherit from one another.
    `product` is what the Realtime API failed to give, for the 502's sentence."""
    match error:
        case WrongDoor():
            # Says no more than that: the header's name and the secret stay the operator's.
            return Problem(
                403, "direct-access", "Forbidden", "This API answers only at its public URL."
            )
        case UserBlocked():
            # Says no more: why the operator blocked the user is the operator's to tell.
            return Problem(
                403,
                "user-blocked",
                "Forbidden",
                "This account may not use the service; contact the service's operator.",
            )
        case InvalidToken():
            challenge = (
                f'Bearer realm="{REALM}", error="invalid_token", '
                f'error_description="{error.description}"'
            )
            return Problem(
                401,
                "invalid-token",
                "Unauthorized",
                error.description,
                {"WWW-Authenticate": challenge},
            )
        case ProfileNotInPlan():
            # No challenge: no other token (no scope to step up to) gets the profile; the
            # operator's plan does. `plan` lets the page show the sentence as it is.
            extra = {"plan": error.plan}
            return Problem(403, "insufficient-scope", "Forbidden", error.detail, extra=extra)
        case InsufficientScope() | ProfileNotPermitted():
            scopes = " ".join(error.scopes)
            challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scopes}"'
            detail = error.description if isinstance(error, InsufficientScope) else error.detail
            return Problem(
                403, "insufficient-scope", "Forbidden", detail, {"WWW-Authenticate": challenge}
            )
        case WrongFlow():
            extra = {"field": "profile", "route": error.route}
            return Problem(400, "wrong-flow", "Bad Request", error.detail, extra=extra)
        case InvalidRequest():
            extra = {"field": error.field} if error.field else {}
            return Problem(400, "invalid-request", "Bad Request", error.detail, extra=extra)
        case BodyTooLarge():
            return Problem(413, "body-too-large", "Content Too Large", error.detail)
        case UnsupportedMediaType():
            return Problem(415, "unsupported-media-type", "Unsupported Media Type", error.detail)
        case QuotaExceeded():
            headers = {"Retry-After": str(error.retry_after)} | ratelimit_headers(error.windows)
            return Problem(
                429,
                "quota-exceeded",
                "Too Many Requests",
                f"The '{error.violated}' quota is used up; "
                f"try again in {error.retry_after} seconds.",
                headers,
                {"policy": error.violated, "retry_after": error.retry_after},
            )
        case GlobalQuotaExceeded():
            # 503, not 429: the caller sent nothing too many; the service is at its capacity.
            return Problem(
                503,
                "capacity-exhausted",
                "Service Unavailable",
                "The service has reached its limit for now; please try again later.",
                {"Retry-After": str(error.retry_after)},
                {"retry_after": error.retry_after},
            )
        case SpendLimitExceeded():
            return Problem(
                429,
                "spend-limit",
                "Too Many Requests",
                error.detail,
                {"Retry-After": str(error.retry_after)},
                {"policy": f"spend-{error.budget}", "retry_after": error.retry_after},
            )
        case CallLimitExceeded():
            return Problem(
                429,
                "call-limit",
                "Too Many Requests",
                error.detail,
                {"Retry-After": str(error.retry_after)},
                {
                    "policy": error.limit,
                    "retry_after": error.retry_after,
                    "minutes_left_today": error.minutes_left,
                },
            )
        case CallNotFound():
            return not_found()
        case DependencyUnavailable():
            return Problem(
                503,
                "dependency-unavailable",
                "Service Unavailable",
                "A service this endpoint depends on is unavailable; please try again shortly.",
                {"Retry-After": str(error.retry_after)},
            )
        case UpstreamRejected() | UpstreamBadResponse():
            return Problem(
                502,
                "upstream-error",
                "Bad Gateway",
                f"The Realtime API did not provide {product}.",
            )
        case UpstreamTimeout():
            return Problem(
                504,
                "upstream-timeout",
                "Gateway Timeout",
                "The Realtime API did not answer in time; please try again.",
            )
        case ConfigError():
            return Problem(
                500,
                "misconfigured",
                "Internal Server Error",
                "The service is misconfigured; its operator has been told.",
            )
        case _:
            return Problem(
                500,
                "internal-error",
                "Internal Server Error",
                "An unexpected error occurred; it has been logged.",
            )


def not_found() -> Problem:
    return Problem(404, "not-found", "Not Found", "No such resource.")


def method_not_allowed(allowed: str) -> Problem:
    return Problem(
        405,
        "method-not-allowed",
        "Method Not Allowed",
        f"Use {allowed} on this resource.",
        {"Allow": allowed},
    )


def ratelimit_headers(windows: tuple[WindowUsage, ...]) -> dict[str, str]:
    """draft-ietf-httpapi-ratelimit-headers: every window's policy and what is left of it."""
    return {
        "RateLimit-Policy": ", ".join(f'"{w.name}";q={w.limit};w={w.seconds}' for w in windows),
        "RateLimit": ", ".join(f'"{w.name}";r={w.remaining};t={w.reset_after}' for w in windows),
    }


@dataclass(frozen=True)
class Outcome:
    """How one refusal is logged and counted: one line, one metric (with its dimension)."""

    metric: str
    level: str  # the logger's method: "info", "warning" or "error"
    message: str
    fields: dict[str, Any]
    dimension: tuple[str, str] | None = None


def _outcome(
    *,
    metric: str,
    level: str,
    message: str,
    dimension: tuple[str, str] | None = None,
    **fields: Any,
) -> Outcome:
    quoted = {name: _quoted(name, value) for name, value in fields.items()}
    return Outcome(metric, level, message, quoted, dimension)


def outcome_for(error: Exception) -> Outcome:
    """The table: expected refusals at INFO, the service's own limits at WARNING, what only
    the operator can fix at ERROR. Order matters only where classes inherit from one another."""
    match error:
        case WrongDoor():
            # INFO: anyone who finds the API's own URL can send these; the metric shows a
            # flood, and a rotation gone wrong (every request refused) on the dashboard.
            return _outcome(
                metric="DirectRequestsRefused", level="info", message="request refused",
                outcome="wrong_door", reason=error.reason,
            )  # fmt: skip
        case AuthError():
            return _outcome(
                metric="AuthFailures", level="info", message="request refused",
                dimension=("reason", error.reason), outcome="unauthorized", reason=error.reason,
            )  # fmt: skip
        case RequestError():
            return _outcome(
                metric="RequestsRefused", level="info", message="request refused",
                outcome="bad_request", reason=str(error), field=error.field,
            )  # fmt: skip
        case QuotaExceeded():
            return _outcome(
                metric="QuotaRefusals", level="info", message="quota exhausted",
                outcome="quota_exceeded", policy=error.violated, retry_after=error.retry_after,
                scope=error.scope,
            )  # fmt: skip
        case GlobalQuotaExceeded():
            return _outcome(
                metric="GlobalQuotaRefusals", level="warning", message="global quota exhausted",
                outcome="global_quota_exceeded", policy=error.violated,
                retry_after=error.retry_after,
            )  # fmt: skip
        case CallLimitExceeded():
            return _outcome(
                metric="CallLimitRefusals", level="info", message="call limit reached",
                outcome="call_limit", policy=error.limit, retry_after=error.retry_after,
            )  # fmt: skip
        case SpendLimitExceeded():
            return _outcome(
                metric="SpendRefusals", level="info", message="spend budget used up",
                outcome="spend_limit", policy=f"spend-{error.budget}",
                retry_after=error.retry_after,
            )  # fmt: skip
        case UserBlocked():
            return _outcome(
                metric="BlockedRefusals", level="info", message="user blocked",
                outcome="user_blocked",
            )  # fmt: skip
        case CallNotFound():
            return _outcome(
                metric="CallsNotFound", level="info", message="no such call",
                outcome="call_not_found",
            )  # fmt: skip
        case DependencyError():
            # An unusable stored key, or 401 from OpenAI after a re-read: only the operator
            # can act. Anything else passes (a throttle, an outage) and is alarmed by rate.
            alarming = isinstance(error, DependencyMisconfigured) or error.status == 401
            return _outcome(
                metric="UpstreamErrors", level="error" if alarming else "warning",
                message="dependency failed", dimension=("dependency", error.dependency),
                outcome=type(error).__name__, dependency=error.dependency, reason=error.reason,
            )  # fmt: skip
        case ConfigError():
            # A deploy that cannot serve this route: the operator's alarm, like a bug.
            return _outcome(
                metric="UnexpectedErrors", level="error", message="misconfigured",
                outcome="misconfigured", reason=str(error),
            )  # fmt: skip
        case _:
            return _outcome(
                metric="UnexpectedErrors", level="error", message="unexpected failure",
                outcome=type(error).__name__,
            )  # fmt: skip
