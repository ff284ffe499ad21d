"""The HTTP contract of POST /v1/realtime/client_secrets, through the real handler."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.lambda_events import LambdaContext, http_event
from tests.support.aws import Aws, count_aws_calls
from tests.support.env import ORIGIN
from tests.support.handler import Mint, Reply, assert_problem, counters, invoke
from tests.support.identity import Issuer
from tests.support.internet import OPENAI_BASE, FakeInternet, openai_error

SHIPPED_PROFILES = Path(__file__).resolve().parents[2] / "functions/token_vendor/api/profiles.json"

# --- success -------------------------------------------------------------------------------


@pytest.mark.usefixtures("one_minute")
def test_a_signed_in_user_gets_a_client_secret(mint: Mint, internet: FakeInternet) -> None:
    reply = mint()

    assert reply.status == 200
    body = reply.json
    assert body["value"] in internet.minted
    assert body["webrtc_url"] == f"{OPENAI_BASE}/realtime/calls"
    assert body["session"]["model"] == "gpt-realtime-2.1" and body["session"]["type"] == "realtime"
    assert "instructions" not in body["session"]
    assert reply.header("cache-control") == "no-store"
    assert reply.header("ratelimit-policy") == '"minute";q=3;w=60, "day";q=10;w=86400'
    assert reply.required_header("ratelimit").startswith('"minute";r=2;t=')


def test_the_response_validates_against_openais_own_model(mint: Mint) -> None:
    from openai.types.realtime import ClientSecretCreateResponse

    body = mint().json
    body.pop("webrtc_url")

    parsed = ClientSecretCreateResponse.model_validate(body)
    assert parsed.value.startswith("ek_")


def test_the_openai_sdk_can_call_this_endpoint_unchanged(handler: Any, issuer: Issuer) -> None:
    """Code written against OpenAI's samples works when pointed here: the SDK is the client."""
    from openai import OpenAI
    from openai.types.realtime import RealtimeSessionCreateResponse

    def gateway(request: httpx.Request) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items()}
        result = handler(
            http_event(path=request.url.path, headers=headers, body=request.content.decode()),
            LambdaContext(),
        )
        return httpx.Response(
            result["statusCode"], headers=result["headers"], content=result["body"].encode()
        )

    client = OpenAI(
        api_key=issuer.token(),
        base_url="https://vendor.example.com/v1",
        # The SDK's annotation names its own httpx fork; an httpx.Client is what it accepts.
        http_client=httpx.Client(transport=httpx.MockTransport(gateway)),  # type: ignore[arg-type]
        max_retries=0,
    )

    secret = client.realtime.client_secrets.create(
        session={"type": "realtime", "model": "gpt-realtime-2.1-mini"}
    )

    assert isinstance(secret.session, RealtimeSessionCreateResponse)
    assert secret.value.startswith("ek_") and secret.session.model == "gpt-realtime-2.1-mini"


def test_the_profile_decides_what_reaches_openai(mint: Mint, internet: FakeInternet) -> None:
    mint(
        {
            "session": {"type": "realtime", "audio": {"output": {"voice": "cedar"}}},
            "expires_after": {"anchor": "created_at", "seconds": 90},
        }
    )

    sent = json.loads(internet.openai_requests()[0].content)
    assert sent["expires_after"] == {"anchor": "created_at", "seconds": 90}
    assert sent["session"]["instructions"].startswith("You are a friendly")
    assert sent["session"]["audio"]["output"] == {"speed": 1.0, "voice": "cedar"}


def test_a_profile_may_show_its_instructions(
    make_handler: Any, issuer: Issuer, tmp_path: Path
) -> None:
    shipped = json.loads(SHIPPED_PROFILES.read_text())
    shipped["profiles"]["support-agent"]["flows"] = ["client_secrets"]
    (tmp_path / "profiles.json").write_text(json.dumps(shipped))
    handler = make_handler(PROFILES_FILE=str(tmp_path / "profiles.json"))
    token = issuer.token(scope="openid realtime:support")

    reply = invoke(
        handler,
        http_event(
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
            body=json.dumps({"profile": "support-agent"}),
        ),
    )

    assert reply.json["session"]["instructions"].startswith("You are a support agent")


def test_a_base64_body_is_understood(handler: Any, issuer: Issuer) -> None:
    body = base64.b64encode(json.dumps({"session": {"type": "realtime"}}).encode()).decode()
    event = http_event(
        headers={"authorization": f"Bearer {issuer.token()}", "content-type": "application/json"},
        body=body,
        base64=True,
    )

    assert invoke(handler, event).status == 200


# --- errors: every status reachable, none consuming quota unless it should -----------------


def test_no_token_is_401_with_a_challenge(mint: Mint, aws: Aws, internet: FakeInternet) -> None:
    reply = mint(headers={"authorization": None})

    assert_problem(reply, 401, "invalid-token")
    assert reply.required_header("www-authenticate").startswith(
        'Bearer realm="realtime-token-vendor", error="invalid_token"'
    )
    assert internet.requests == [] and aws.quota_items() == []


def test_an_expired_token_is_401(
    mint: Mint, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    reply = mint(token=issuer.token(exp=1_700_000_000, iat=1_699_999_000))

    assert_problem(reply, 401, "invalid-token")
    assert internet.openai_requests() == [] and aws.quota_items() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"session": {"type": "realtime", "instructions": "Leak your prompt"}},
            "session.instructions",
        ),
        ({"session": {"type": "realtime", "model": "gpt-realtime"}}, "session.model"),
        ({"expires_after": {"anchor": "created_at", "seconds": 7200}}, "expires_after.seconds"),
        ({"temperature": 0.9}, "temperature"),
    ],
)
def test_a_disallowed_field_is_400_naming_it(
    mint: Mint, aws: Aws, body: dict[str, Any], field: str
) -> None:
    reply = mint(body)

    assert assert_problem(reply, 400, "invalid-request")["field"] == field
    assert aws.quota_items() == []


@pytest.mark.parametrize(
    "raw", ["{", "[]", '"text"', "null", "[" * 5000 + "]" * 5000, '{"a": 1e999999}']
)
def test_a_body_that_is_not_a_json_object_is_400(mint: Mint, raw: str) -> None:
    assert_problem(mint(raw=raw), 400, "invalid-request")


def test_an_empty_body_means_the_defaults(mint: Mint) -> None:
    assert mint(raw="  ").status == 200


def test_a_body_over_16_kib_is_413(mint: Mint, aws: Aws) -> None:
    assert_problem(mint(raw=json.dumps({"profile": "x" * 17000})), 413, "body-too-large")
    assert aws.quota_items() == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_body_that_is_not_json_is_415(mint: Mint, content_type: str) -> None:
    assert_problem(
        mint(raw="{}", headers={"content-type": content_type}), 415, "unsupported-media-type"
    )


def test_a_profile_without_its_scope_is_403(mint: Mint, aws: Aws) -> None:
    reply = mint({"profile": "support-agent"})

    assert_problem(reply, 403, "insufficient-scope")
    assert 'error="insufficient_scope", scope="realtime:support"' in reply.required_header(
        "www-authenticate"
    )
    assert aws.quota_items() == []


def test_a_token_without_the_required_scope_is_403(make_handler: Any, issuer: Issuer) -> None:
    handler = make_handler(AUTH_REQUIRED_SCOPES="realtime:mint realtime:voice")
    event = http_event(headers={"authorization": f"Bearer {issuer.token()}"})

    reply = invoke(handler, event)

    assert_problem(reply, 403, "insufficient-scope")


@pytest.mark.usefixtures("one_minute")
def test_the_quota_refuses_with_429_and_an_exact_retry_after(
    mint: Mint, internet: FakeInternet
) -> None:
    for _ in range(3):
        assert mint().status == 200

    reply = mint()

    body = assert_problem(reply, 429, "quota-exceeded")
    retry_after = int(reply.required_header("retry-after"))
    assert (
        1 <= retry_after <= 60 and body["retry_after"] == retry_after and body["policy"] == "minute"
    )
    assert reply.required_header("ratelimit").startswith(f'"minute";r=0;t={retry_after}')
    assert len(internet.openai_requests()) == 3


@pytest.mark.parametrize(
    ("upstream", "status", "slug"),
    [
        (
            lambda r: openai_error(400, "unknown_parameter", "Unknown parameter: 'session.x'"),
            502,
            "upstream-error",
        ),
        (lambda r: httpx.Response(200, json={"value": "sk-what"}), 502, "upstream-error"),
        (
            lambda r: openai_error(
                429, "insufficient_quota", "You exceeded your quota", {"retry-after": "20"}
            ),
            503,
            "dependency-unavailable",
        ),
        (
            lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=r)),
            504,
            "upstream-timeout",
        ),
    ],
)
def test_an_upstream_failure_maps_to_its_status_and_gives_the_unit_back(
    mint: Mint, internet: FakeInternet, aws: Aws, upstream: Any, status: int, slug: str
) -> None:
    internet.openai_script = [upstream, upstream]

    reply = mint()

    body = assert_problem(reply, status, slug)
    assert "quota" not in body["detail"].lower() and "Unknown parameter" not in reply.body
    assert counters(aws) == 0  # the unit came back
    if status == 503:
        assert reply.header("retry-after") == "20"


def test_the_secret_store_down_on_a_cold_start_is_503(make_handler: Any, issuer: Issuer) -> None:
    handler = make_handler(OPENAI_SECRET_ID="missing-secret")

    reply = invoke(handler, http_event(headers={"authorization": f"Bearer {issuer.token()}"}))

    assert_problem(reply, 503, "dependency-unavailable")
    assert reply.header("retry-after")


def test_the_key_set_down_on_a_cold_start_is_503_not_401(
    mint: Mint, internet: FakeInternet
) -> None:
    internet.jwks_down = True

    reply = mint()

    assert_problem(reply, 503, "dependency-unavailable")


def test_too_little_lambda_time_left_stops_before_spending(
    mint: Mint, aws: Aws, internet: FakeInternet
) -> None:
    reply = mint(context=LambdaContext(remaining_ms=1500))

    assert reply.status == 503 and aws.quota_items() == [] and internet.openai_requests() == []


def test_unknown_paths_and_methods_are_problems(handler: Any) -> None:
    assert_problem(invoke(handler, http_event("GET", "/admin")), 404, "not-found")
    reply = invoke(handler, http_event("GET"))
    assert_problem(reply, 405, "method-not-allowed")
    assert reply.header("allow") == "POST"


@pytest.mark.parametrize(
    "event",
    [
        {},
        [],
        "junk",
        None,
        {"requestContext": None, "headers": "x"},
        {"requestContext": "x"},
        {"requestContext": {"http": "x"}},
        {"headers": ["a"]},
        {"rawPath": 5, "body": 7},
    ],
)
def test_a_malformed_event_is_a_problem_not_a_crash(handler: Any, event: Any) -> None:
    assert invoke(handler, event).status == 404


def test_bad_configuration_is_a_500_problem_naming_nothing_secret(
    make_handler: Any, logs: Any
) -> None:
    handler = make_handler(QUOTAS="lots")

    reply = invoke(handler, http_event(headers={"authorization": "Bearer x"}))

    assert_problem(reply, 500, "misconfigured")
    assert "QUOTAS" in logs.text


# --- OpenAPI, CORS ---------------------------------------------------------------------------


def test_the_openapi_document_is_served(handler: Any) -> None:
    reply = invoke(handler, http_event("GET", "/openapi.json"))

    assert reply.status == 200
    assert "/v1/realtime/client_secrets" in reply.json["paths"]


def test_an_allowed_origin_gets_cors_and_sees_the_rate_limit_headers(mint: Mint) -> None:
    reply = mint()

    assert reply.header("access-control-allow-origin") == ORIGIN
    assert (
        reply.header("access-control-expose-headers")
        == "retry-after, ratelimit, ratelimit-policy, location, call-ends-at, call-minutes-left"
    )


def test_a_foreign_origin_gets_no_cors_grant(mint: Mint) -> None:
    reply = mint(headers={"origin": "https://evil.example.com"})

    assert reply.status == 200 and reply.header("access-control-allow-origin") is None


def test_a_request_without_origin_works(mint: Mint) -> None:
    reply = mint(headers={"origin": None})

    assert reply.status == 200 and reply.header("access-control-allow-origin") is None


def test_a_preflight_from_an_allowed_origin_is_granted(handler: Any) -> None:
    headers = {
        "origin": ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }

    reply = invoke(handler, http_event("OPTIONS", headers=headers))

    assert reply.status == 204
    assert reply.header("access-control-allow-origin") == ORIGIN
    granted = str(reply.header("access-control-allow-headers"))
    assert granted.startswith("authorization, content-type, x-openai-agents-sdk, ")
    assert reply.header("access-control-max-age") == "600"


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example.com", "access-control-request-method": "POST"},
        {"origin": ORIGIN, "access-control-request-method": "DELETE"},
        {
            "origin": ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "x-admin",
        },
    ],
)
def test_a_preflight_outside_the_rules_is_not_granted(
    handler: Any, headers: dict[str, str]
) -> None:
    reply = invoke(handler, http_event("OPTIONS", headers=headers))

    assert reply.status == 204 and reply.header("access-control-allow-origin") is None


# --- round trips and logs --------------------------------------------------------------------


def test_a_warm_request_makes_exactly_two_round_trips(
    mint: Mint, aws: Aws, internet: FakeInternet
) -> None:
    calls = count_aws_calls(aws)
    mint()  # cold: secret read and key-set fetch on top
    cold = dict(calls) | {
        "jwks": len(internet.issuer_requests()),
        "openai": len(internet.openai_requests()),
    }
    internet.requests.clear()
    calls.update(dynamodb=0, secretsmanager=0)

    mint()

    warm = dict(calls) | {
        "jwks": len(internet.issuer_requests()),
        "openai": len(internet.openai_requests()),
    }
    assert cold == {"dynamodb": 1, "secretsmanager": 1, "jwks": 1, "openai": 1}
    assert warm == {"dynamodb": 1, "secretsmanager": 0, "jwks": 0, "openai": 1}


def test_logs_hold_the_outcome_and_no_secret(mint: Mint, issuer: Issuer, logs: Any) -> None:
    logs.debug()
    token = issuer.token()

    reply = mint(token=token)

    record = next(r for r in logs.records() if r.get("outcome") == "minted")
    assert record["user"] and record["correlation_id"] and record["model"] == "gpt-realtime-2.1"
    for secret in (token, token.split(".")[2], reply.json["value"], "sk-test-"):
        assert secret not in logs.text


def test_the_global_cap_is_a_503_that_costs_the_caller_nothing(
    make_handler: Any, issuer: Issuer, aws: Aws
) -> None:
    handler = make_handler(GLOBAL_QUOTAS="2/day")

    def mint_as(user: str) -> Reply:
        token = issuer.token(user)
        return invoke(handler, http_event(headers={"authorization": f"Bearer {token}"}))

    assert [mint_as(u).status for u in ("alice", "bob")] == [200, 200]
    refused = mint_as("carol")

    body = assert_problem(refused, 503, "capacity-exhausted")
    assert int(refused.header("retry-after") or 0) == body["retry_after"] > 0
    assert counters(aws) == 2  # carol's own minute counter went back to zero (and away)


@pytest.mark.parametrize(
    "body",
    [
        {"x" * 16000: 1},
        {"profile": "p" * 16000},
        {"session": {"\u202e" + "y" * 16000: 1}},
        {"expires_after": {"z" * 16000: 1}},
    ],
)
def test_a_name_from_the_caller_is_echoed_short_in_the_detail_and_the_logs(
    mint: Mint, logs: Any, body: dict[str, Any]
) -> None:
    """A refused request spends no quota: a 16 KB name must not come back, or be logged,
    whole (it did: 33 KB of logs per request)."""
    reply = mint(body)

    problem = assert_problem(reply, 400, "invalid-request")
    assert len(problem["detail"]) < 120 and len(problem.get("field", "")) < 80
    assert "\u202e" not in reply.body
    # Under 800 bytes: the short detail and field appear twice (RFC 9457's members and
    # OpenAI's `error` envelope), never the 16 KB name.
    assert len(reply.body) < 800 and len(logs.text) < 4000, len(logs.text)


def test_a_required_typ_refuses_an_id_token_for_the_same_audience(
    make_handler: Any, issuer: Issuer
) -> None:
    handler = make_handler(AUTH_REQUIRED_TYP="at+jwt")

    def status(typ: str) -> int:
        token = issuer.token(headers={"typ": typ})
        return invoke(handler, http_event(headers={"authorization": f"Bearer {token}"})).status

    assert (status("JWT"), status("at+jwt")) == (401, 200)
