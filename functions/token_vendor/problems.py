"""The one mapping from domain errors to HTTP: RFC 9457 problem documents and their headers.

Clients get a stable `type`, a human `title` and a generic `detail`; the precise reason goes
to the logs. Nothing a client sees quotes a token, a key or an upstream error verbatim.

Every document also carries OpenAI's own error envelope, `"error": {"message", "type",
"param", "code"}`, so OpenAI's SDKs, pointed at this API, show why a request was refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import (
    BodyTooLarge,
    CallLimitExceeded,
    CallNotFound,
    ConfigError,
    DependencyUnavailable,
    GlobalQuotaExceeded,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    ProfileNotPermitted,
    QuotaExceeded,
    SpendLimitExceeded,
    UnsupportedMediaType,
    UpstreamBadResponse,
    UpstreamRejected,
    UpstreamTimeout,
    WindowUsage,
    WrongFlow,
)

TYPE_BASE = "urn:realtime-token-vendor:problem:"
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
        return {
            "type": TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
            "error": {
                "message": self.detail,
                "type": _openai_type(self.status),
                "param": self.extra.get("field"),
                "code": self.slug.replace("-", "_"),
            },
        }


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
