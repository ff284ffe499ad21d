"""Battery 6: CORS. CORS is not access control: the JWT
check stands alone, and a request with no Origin (a mobile app, curl) works."""

from __future__ import annotations

import json
from typing import Any

import pytest
from token_vendor.api import http

from devstack.lambda_events import http_event
from devstack.template import cors_configuration, load_template
from tests.support.env import ORIGIN
from tests.support.handler import invoke
from tests.support.identity import Issuer

ALLOWED_HEADERS = (
    "authorization", "content-type", "x-openai-agents-sdk", "x-stainless-arch",
    "x-stainless-lang", "x-stainless-os", "x-stainless-package-version", "x-stainless-retry-count",
    "x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-timeout",
)  # fmt: skip
PREFLIGHT = {
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization,content-type",
}


def test_the_function_and_the_template_apply_the_same_rules() -> None:
    cors = cors_configuration(load_template())

    assert cors["AllowMethods"] == list(http.CORS_ALLOW_METHODS)
    assert cors["AllowHeaders"] == list(http.CORS_ALLOW_HEADERS) == list(ALLOWED_HEADERS)
    assert cors["ExposeHeaders"] == list(http.CORS_EXPOSE_HEADERS)
    assert cors["MaxAge"] == http.CORS_MAX_AGE and cors["AllowCredentials"] is False
    assert {"retry-after", "ratelimit", "ratelimit-policy"} <= set(cors["ExposeHeaders"])


def test_an_allowed_origin_is_granted_and_sees_the_rate_limit_headers(mint: Any) -> None:
    reply = mint(headers={"origin": ORIGIN})

    assert reply.status == 200
    assert reply.header("access-control-allow-origin") == ORIGIN
    assert reply.header("access-control-allow-credentials") is None
    assert set(reply.header("access-control-expose-headers").split(", ")) == {
        "retry-after",
        "ratelimit",
        "ratelimit-policy",
        "location",
        "call-ends-at",
        "call-minutes-left",
    }
    assert "Origin" in reply.header("vary")


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example.com",
        "null",
        "https://app.example.com.evil.test",
        "http://app.example.com",
        "https://sub.app.example.com",
        "*",
    ],
)
def test_a_disallowed_origin_gets_no_grant_on_any_answer(
    mint: Any, handler: Any, origin: str
) -> None:
    for reply in (
        mint(headers={"origin": origin}),
        mint(headers={"origin": origin, "authorization": None}),
        invoke(handler, http_event("OPTIONS", headers={"origin": origin} | PREFLIGHT)),
    ):
        assert reply.header("access-control-allow-origin") is None
        assert reply.header("access-control-allow-methods") is None


def test_the_preflight_grants_exactly_the_configured_rules(handler: Any) -> None:
    reply = invoke(handler, http_event("OPTIONS", headers={"origin": ORIGIN} | PREFLIGHT))

    assert reply.status == 204 and reply.body == ""
    assert reply.header("access-control-allow-origin") == ORIGIN
    assert reply.header("access-control-allow-methods") == "GET, POST"
    assert reply.header("access-control-allow-headers") == ", ".join(ALLOWED_HEADERS)
    assert reply.header("access-control-max-age") == "600"


# What OpenAI's browser SDKs ask for in their preflights (Chromium's lists, lower-cased and
# sorted): the Agents SDK's offer to /v1/realtime/calls, the `openai` package's requests.
AGENTS_SDK_ASKS = "authorization,content-type,x-openai-agents-sdk"
OPENAI_PACKAGE_ASKS = (
    "authorization,content-type,x-stainless-arch,x-stainless-lang,x-stainless-os,"
    "x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,"
    "x-stainless-runtime-version,x-stainless-timeout"
)


@pytest.mark.parametrize("asked", [AGENTS_SDK_ASKS, OPENAI_PACKAGE_ASKS], ids=["agents", "openai"])
@pytest.mark.parametrize("path", ["/v1/realtime/client_secrets", "/v1/realtime/calls"])
def test_a_preflight_for_openais_browser_sdks_is_granted(
    handler: Any, asked: str, path: str
) -> None:
    """Without these an app pointing OpenAI's SDKs at the API fails its preflight, and the SDK
    says only "Failed to fetch" (tests/e2e/test_sdk.py drives the SDKs themselves)."""
    headers = {"origin": ORIGIN, "access-control-request-method": "POST"}
    reply = invoke(
        handler,
        http_event("OPTIONS", path, headers=headers | {"access-control-request-headers": asked}),
    )

    assert reply.header("access-control-allow-origin") == ORIGIN
    granted = str(reply.header("access-control-allow-headers")).split(", ")
    assert set(asked.split(",")) <= set(granted)


def test_no_origin_at_all_works_like_a_mobile_app_or_curl(mint: Any) -> None:
    reply = mint(headers={"origin": None})

    assert reply.status == 200 and reply.header("access-control-allow-origin") is None


def test_cors_is_not_access_control(mint: Any, issuer: Issuer) -> None:
    """An allowed origin without a valid token is still refused; errors still carry CORS so
    the page can read them."""
    reply = mint(headers={"origin": ORIGIN, "authorization": "Bearer not-a-token"})

    assert reply.status == 401 and reply.header("access-control-allow-origin") == ORIGIN


@pytest.mark.usefixtures("one_minute")
def test_errors_expose_retry_after_to_the_page(mint: Any) -> None:
    replies = [mint() for _ in range(4)]

    assert replies[-1].status == 429
    assert "retry-after" in replies[-1].header("access-control-expose-headers")


def test_the_function_and_the_template_take_their_origins_from_one_place() -> None:
    """Both allow exactly the AllowedOrigins parameter. The stack's own page is not among
    them: CloudFront serves it and the API from one origin, so it needs no CORS at all."""
    template = load_template()
    cors = template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"]
    env = template["Resources"]["TokenFunction"]["Properties"]["Environment"]["Variables"]

    assert cors["AllowOrigins"] == {
        "Fn::If": ["HasExtraOrigins", {"Fn::Split": [",", {"Ref": "AllowedOrigins"}]}, []]
    }
    assert env["ALLOWED_ORIGINS"] == {"Ref": "AllowedOrigins"}
    assert "WebDistribution" not in json.dumps(cors)


@pytest.mark.parametrize(
    "asked",
    [
        {"access-control-request-method": "DELETE"},
        {"access-control-request-method": "PUT"},
        {"access-control-request-method": "POST", "access-control-request-headers": "x-api-key"},
        {"access-control-request-method": "POST", "access-control-request-headers": "originator"},
        {
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, cookie",
        },
        {},
    ],
    ids=[
        "delete",
        "put",
        "unlisted_header",
        "another_clients_header",
        "cookie_among_listed",
        "no_method_asked",
    ],
)
def test_a_preflight_asking_for_more_than_the_rules_is_granted_nothing(
    handler: Any, asked: dict[str, str]
) -> None:
    reply = invoke(handler, http_event("OPTIONS", headers={"origin": ORIGIN} | asked))

    assert reply.status == 204
    for name in ("allow-origin", "allow-methods", "allow-headers", "max-age", "expose-headers"):
        assert reply.header(f"access-control-{name}") is None


def test_a_preflight_without_an_origin_is_granted_nothing(handler: Any) -> None:
    reply = invoke(handler, http_event("OPTIONS", headers=PREFLIGHT))

    assert reply.header("access-control-allow-origin") is None
    assert reply.header("access-control-allow-methods") is None
