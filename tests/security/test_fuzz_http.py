"""Battery 5: fuzzing the HTTP surface. schemathesis against the function's own OpenAPI
document (served by the handler itself through a WSGI adapter that builds payload-2.0
events), and hypothesis-generated bodies, headers and bytes: no 5xx, every status
documented, every error a problem document."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.lambda_events import LambdaContext, http_event
from tests.support import forge
from tests.support.handler import Reply, invoke
from tests.support.identity import Issuer

OPENAPI = json.loads(
    (Path(__file__).resolve().parents[2] / "functions/token_vendor/api/openapi.json").read_text()
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def documented(path: str, method: str) -> set[int]:
    """The statuses the OpenAPI document gives this method on this path. Only two answers
    are outside it by nature: 404 for a path it does not name, and the CORS preflight's 204
    (answered by API Gateway in production; the function answers it the same way locally)."""
    operations = OPENAPI["paths"].get(path)
    if operations is None:
        return {404}
    if method.lower() in operations:
        return {int(s) for s in operations[method.lower()].get("responses", {})}
    if method == "OPTIONS" and "post" in operations:
        return {204}
    return {int(s) for op in operations.values() for s in op.get("responses", {})} & {405}


def wsgi(handler: Callable[..., dict[str, Any]]) -> Callable[..., Any]:
    """API Gateway in front of the handler, as a WSGI app schemathesis can call in-process."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {
            k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        try:
            text, is_b64 = body.decode(), False
        except UnicodeDecodeError:
            text, is_b64 = base64.b64encode(body).decode(), True
        event = http_event(
            environ["REQUEST_METHOD"], environ["PATH_INFO"], headers, text or None, is_b64
        )
        event["rawQueryString"] = environ.get("QUERY_STRING", "")
        result = handler(event, LambdaContext())
        start_response(f"{result['statusCode']} X", list(result["headers"].items()))
        return [result["body"].encode()]

    return app


@pytest.fixture
def fuzz_handler(make_handler: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    yield make_handler(QUOTAS="1000000/minute")


def test_schemathesis_finds_nothing(fuzz_handler: Any, issuer: Issuer) -> None:
    app = wsgi(fuzz_handler)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    token = issuer.token()
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    statuses: list[int] = []

    @given(case=schema["/v1/realtime/client_secrets"]["POST"].as_strategy())
    @FUZZ
    def mint(case: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        response = case.call(app=app)
        # Schema-valid bodies may still name a profile, model or voice the server's policy
        # does not know: those are 400 by design, so "positive data acceptance" does not apply.
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        assert response.status_code < 500
        statuses.append(response.status_code)

    @given(case=schema["/v1/realtime/client_secrets"]["POST"].as_strategy())
    @FUZZ
    def anonymous(case: Any) -> None:
        response = case.call(app=app)
        assert response.status_code == 401

    mint()
    anonymous()

    assert len(statuses) >= 100 and 200 in statuses and 400 in statuses  # it really explored


def test_schemathesis_finds_nothing_on_the_calls_routes(fuzz_handler: Any, issuer: Issuer) -> None:
    """Offers, sessions, profiles and call ids generated from the document, with a valid
    token: every answer documented, never a 5xx but the 503s the limits allow."""
    app = wsgi(fuzz_handler)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    statuses: list[int] = []
    for path, method in (
        ("/v1/realtime/calls", "POST"),
        ("/v1/realtime/calls", "GET"),
        ("/v1/realtime/calls/{call_id}/hangup", "POST"),
    ):

        @given(case=schema[path][method].as_strategy())
        @FUZZ
        def fuzz(case: Any) -> None:
            user = f"fuzz-{len(statuses) % 7}"
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {issuer.token(user)}"}
            response = case.call(app=app)
            # Random text is rarely an SDP offer: 400 by design, as for unknown profiles.
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
            assert response.status_code < 500, response.text
            statuses.append(response.status_code)

        fuzz()

    assert {200, 400, 404} <= set(statuses), sorted(set(statuses))


def check(reply: Reply, path: str = "/v1/realtime/client_secrets", method: str = "POST") -> None:
    assert reply.status < 500, reply.body
    assert reply.status in documented(path, method), (method, path, reply.status)
    if reply.status >= 400:
        assert reply.header("content-type") == "application/problem+json"
        body = reply.json
        assert {"type", "title", "status", "detail"} <= body.keys() and body[
            "status"
        ] == reply.status
    assert "Traceback" not in reply.body


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
bodies = st.one_of(
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {},
        optional={
            "profile": json_values | st.sampled_from(["assistant", "support-agent"]),
            "session": json_values
            | st.fixed_dictionaries(
                {},
                optional={
                    "type": st.sampled_from(["realtime", "transcription"]) | json_values,
                    "model": st.sampled_from(["gpt-realtime-2.1", "gpt-realtime-2.1-mini"])
                    | json_values,
                    "audio": json_values,
                },
            ),
            "expires_after": json_values,
        },
    ).map(json.dumps),
    st.text(max_size=200),
)


@given(
    body=bodies,
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/problem+json", ""]
    ),
)
@FUZZ
def test_any_body_gets_a_documented_answer(
    fuzz_handler: Any, issuer: Issuer, body: str, content_type: str
) -> None:
    token = issuer.token()
    headers = {"authorization": f"Bearer {token}", "content-type": content_type}

    check(invoke(fuzz_handler, http_event(headers=headers, body=body)))


SURROGATES: list[Literal["Cs"]] = ["Cs"]
header_text = st.text(st.characters(codec="utf-8", exclude_categories=SURROGATES), max_size=300)


@given(
    authorization=header_text,
    extra=st.dictionaries(
        st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20), header_text, max_size=5
    ),
)
@FUZZ
def test_any_headers_get_a_documented_answer(
    fuzz_handler: Any, authorization: str, extra: dict[str, str]
) -> None:
    reply = invoke(
        fuzz_handler, http_event(headers=extra | {"authorization": authorization}, body="{}")
    )

    check(reply)
    assert reply.status in (401, 403)  # anything short of a valid token is refused


@given(
    raw=st.binary(max_size=20_000),
    method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "OPTIONS", "PATCH"]),
    path=st.sampled_from(
        ["/v1/realtime/client_secrets", "/openapi.json", "/", "/v1/realtime/calls"]
    ),
)
@FUZZ
def test_any_bytes_on_any_route_get_an_answer(
    fuzz_handler: Any, issuer: Issuer, raw: bytes, method: str, path: str
) -> None:
    event = http_event(
        method,
        path,
        {"authorization": f"Bearer {issuer.token()}", "content-type": "application/json"},
        base64.b64encode(raw).decode(),
        base64=True,
    )

    reply = invoke(fuzz_handler, event)

    check(reply, path, method)


CLAIM_NAMES = ["iss", "sub", "aud", "exp", "nbf", "iat", "scope", "scp", "client_id", "token_use"]


@given(
    header=st.dictionaries(st.sampled_from(["alg", "kid", "typ", "cty", "x"]), json_values),
    claims=st.dictionaries(st.sampled_from(CLAIM_NAMES) | st.text(max_size=8), json_values),
    start_valid=st.booleans(),
)
@FUZZ
def test_any_claims_signed_by_the_real_key_get_a_documented_answer(
    fuzz_handler: Any,
    issuer: Issuer,
    header: dict[str, Any],
    claims: dict[str, Any],
    start_valid: bool,
) -> None:
    """The signature verifies, so every claim check runs on whatever types arrive."""
    key = issuer.keys[0]
    payload = (forge.claims() if start_valid else {}) | claims
    token = forge.rs256(key, {"alg": "RS256", "kid": key.kid} | header, payload)

    reply = invoke(fuzz_handler, http_event(headers={"authorization": f"Bearer {token}"}))

    check(reply)
    assert reply.status in (200, 401, 403)
