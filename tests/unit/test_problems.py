"""problems.py: every problem document also carries OpenAI's error envelope."""

from __future__ import annotations

import json

import pytest
from token_vendor.api.problems import outcome_for, problem_for
from token_vendor.core.errors import (
    BodyTooLarge,
    CallLimitExceeded,
    CallNotFound,
    ConfigError,
    DependencyUnavailable,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    ProfileNotInPlan,
    ProfileNotPermitted,
    QuotaExceeded,
    UnsupportedMediaType,
    UpstreamRejected,
    UpstreamTimeout,
    WrongFlow,
)


@pytest.mark.parametrize(
    ("error", "status", "kind", "param"),
    [
        (InvalidToken("expired", "The token has expired."), 401, "authentication_error", None),
        (InsufficientScope("scope", "Needs a scope.", ("a",)), 403, "permission_error", None),
        (InvalidRequest("no", "session.model"), 400, "invalid_request_error", "session.model"),
        (
            WrongFlow("p", "calls", "/v1/realtime/client_secrets"),
            400,
            "invalid_request_error",
            "profile",
        ),
        (BodyTooLarge("big"), 413, "invalid_request_error", None),
        (UnsupportedMediaType("type"), 415, "invalid_request_error", None),
        (QuotaExceeded(5, (), "minute"), 429, "rate_limit_error", None),
        (CallLimitExceeded("concurrent", "Too many calls.", 9, 3), 429, "rate_limit_error", None),
        (CallNotFound("rtc_1"), 404, "not_found_error", None),
        (DependencyUnavailable("openai", "down"), 503, "server_error", None),
        (UpstreamRejected("openai", "HTTP 400"), 502, "server_error", None),
        (UpstreamTimeout("openai", "slow"), 504, "server_error", None),
        (ConfigError(["X"]), 500, "server_error", None),
        (RuntimeError("boom"), 500, "server_error", None),
    ],
)
def test_every_problem_carries_openais_error_envelope(
    error: Exception, status: int, kind: str, param: str | None
) -> None:
    problem = problem_for(error)
    body = problem.body()

    assert problem.status == status == body["status"]
    assert body["error"] == {
        "message": body["detail"],
        "type": kind,
        "param": param,
        "code": body["type"].rsplit(":", 1)[-1].replace("-", "_"),
    }


def test_a_refusal_that_quotes_a_name_whole_is_still_short_and_clean() -> None:
    """The net under every site that should have echoed the caller's name: what reaches the
    document and the log line is cut and every hidden character replaced."""
    name = "\u202e\x1b[2J\n" + "n" * 60_000
    error = InvalidRequest(f"the field '{name}' is not allowed here", name)

    body = problem_for(error).body()
    fields = outcome_for(error).fields

    assert len(json.dumps(body)) < 2_000
    assert body["detail"].startswith("the field '??[2J?nnn") and body["detail"].endswith("...")
    assert body["field"] == body["error"]["param"] == "??[2J?" + "n" * 74 + "..."
    assert fields["reason"] == body["detail"] and fields["field"] == body["field"]


def test_a_plan_refusal_says_why_and_offers_no_scope_to_step_up_to() -> None:
    plan = problem_for(ProfileNotInPlan("assistant-direct", "free"))
    scope = problem_for(ProfileNotPermitted("support", ("realtime:support",)))

    assert plan.status == 403 and plan.slug == "insufficient-scope"
    assert "WWW-Authenticate" not in plan.headers  # no token with more scopes would do
    body = plan.body()
    assert body["plan"] == "free"
    assert body["detail"] == "Your plan 'free' does not include the profile 'assistant-direct'."
    assert scope.headers["WWW-Authenticate"].endswith('scope="realtime:support"')
    assert "plan" not in scope.body()
