"""The local stack (`make dev`): the dev issuer, the API Gateway stand-in, and the whole
system started, used through the browser's sign-in flow, and stopped, over real loopback HTTP.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.config
import httpx
import jwt
import pytest

from devstack import apigw, idp
from devstack import web as web_page
from devstack.net import free_port
from devstack.stack import AUDIENCE, CLIENT_ID, DEFAULT_PORTS, StackError, start_stack
from tests.support.env import ROOT
from tests.support.serving import serving

pytestmark = pytest.mark.stack

WEB_ORIGIN = "http://localhost:5173"
REDIRECT_URI = WEB_ORIGIN + "/"
# The HttpApi CorsConfiguration as devstack.template.cors_configuration returns it.
TEMPLATE_CORS = {
    "AllowMethods": ["POST"],
    "AllowHeaders": ["authorization", "content-type"],
    "ExposeHeaders": ["retry-after", "ratelimit", "ratelimit-policy"],
    "MaxAge": 600,
    "AllowCredentials": False,
}


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, idp.s256(verifier)


def authorize_params(challenge: str, **overrides: str) -> dict[str, str]:
    params = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "openid realtime:mint",
        "state": "st-" + secrets.token_hex(4),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "nonce": "n-1",
    }
    return {k: v for k, v in (params | overrides).items() if v is not None}


def sign_in(
    http: httpx.Client,
    issuer: str,
    user: str,
    challenge: str,
    redirect_uri: str = REDIRECT_URI,
    scope: str = "openid realtime:mint",
) -> str:
    """What the browser does: open the sign-in page, submit the form, read the redirect."""
    params = authorize_params(challenge, redirect_uri=redirect_uri, scope=scope)
    page = http.get(f"{issuer}/authorize", params=params)
    assert page.status_code == 200, page.text
    assert '<label for="username">' in page.text
    form = params | {"username": user}
    answer = http.post(f"{issuer}/authorize", data=form, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect_uri
    query = parse_qs(location.query)
    assert query["state"] == [params["state"]]
    assert query["iss"] == [issuer]
    return query["code"][0]


def exchange(
    http: httpx.Client, issuer: str, code: str, verifier: str, **extra: str
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
    }
    return http.post(f"{issuer}/token", data=form | extra)


def verify(token: str, issuer: str, audience: str = AUDIENCE) -> dict[str, Any]:
    jwks = httpx.get(f"{issuer}/jwks.json").json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    return jwt.decode(
        token, jwt.PyJWK(key).key, algorithms=["RS256"], audience=audience, issuer=issuer
    )


# -- the dev issuer -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    with serving(lambda url: idp.create_app(url, AUDIENCE, CLIENT_ID, [REDIRECT_URI])) as url:
        yield url


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def test_discovery_names_the_endpoints_and_the_only_flow_it_allows(
    http: httpx.Client, issuer: str
) -> None:
    document = http.get(f"{issuer}/.well-known/openid-configuration").json()

    assert document["issuer"] == issuer
    assert document["token_endpoint"] == f"{issuer}/token"
    assert document["authorization_endpoint"] == f"{issuer}/authorize"
    assert document["jwks_uri"] == f"{issuer}/jwks.json"
    assert document["response_types_supported"] == ["code"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert set(document["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "realtime:mint" in document["scopes_supported"]
    keys = http.get(document["jwks_uri"]).json()["keys"]
    assert [(k["kty"], k["alg"], k["use"]) for k in keys] == [("RSA", "RS256", "sig")]
    assert "d" not in keys[0]  # the public half only


def test_pkce_sign_in_returns_tokens_the_function_accepts(http: httpx.Client, issuer: str) -> None:
    verifier, challenge = pkce_pair()
    code = sign_in(http, issuer, "Alice", challenge)

    answer = exchange(http, issuer, code, verifier)

    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    tokens = answer.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    claims = verify(tokens["access_token"], issuer)
    assert claims["sub"] == "user-alice"
    assert claims["token_use"] == "access"
    assert claims["client_id"] == CLIENT_ID
    assert claims["scope"] == "openid realtime:mint"
    assert claims["exp"] - claims["iat"] == 900
    assert claims["jti"]
    identity = verify(tokens["id_token"], issuer, audience=CLIENT_ID)
    assert (identity["sub"], identity["nonce"]) == ("user-alice", "n-1")


def test_a_wrong_verifier_is_refused_and_spends_the_code(http: httpx.Client, issuer: str) -> None:
    verifier, challenge = pkce_pair()
    code = sign_in(http, issuer, "mallory", challenge)

    wrong = exchange(http, issuer, code, pkce_pair()[0])
    then_right = exchange(http, issuer, code, verifier)

    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert then_right.json()["error"] == "invalid_grant"


def test_a_code_works_once(http: httpx.Client, issuer: str) -> None:
    verifier, challenge = pkce_pair()
    code = sign_in(http, issuer, "bob", challenge)

    first = exchange(http, issuer, code, verifier)
    second = exchange(http, issuer, code, verifier)

    assert first.status_code == 200
    assert (second.status_code, second.json()["error"]) == (400, "invalid_grant")


def test_an_unregistered_redirect_uri_is_refused_on_the_page_not_redirected_to(
    http: httpx.Client, issuer: str
) -> None:
    _, challenge = pkce_pair()
    params = authorize_params(challenge, redirect_uri="http://localhost:5173/elsewhere")

    page = http.get(f"{issuer}/authorize", params=params)
    posted = http.post(f"{issuer}/authorize", data=params | {"username": "eve"})

    assert page.status_code == 400
    assert "location" not in page.headers
    assert "is not registered" in page.text
    assert posted.status_code == 400
    assert "location" not in posted.headers


def test_a_code_is_bound_to_its_redirect_uri(http: httpx.Client, issuer: str) -> None:
    verifier, challenge = pkce_pair()
    code = sign_in(http, issuer, "bob", challenge)

    answer = exchange(http, issuer, code, verifier, redirect_uri="http://localhost:5173/x")

    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "openid admin"}, "invalid_scope"),
    ],
)
def test_a_bad_request_is_sent_back_to_the_app_with_its_state(
    http: httpx.Client, issuer: str, override: dict[str, Any], error: str
) -> None:
    params = authorize_params(pkce_pair()[1], **override)

    answer = http.get(f"{issuer}/authorize", params=params)

    assert answer.status_code == 303
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["error"] == [error]
    assert query["state"] == [params["state"]]
    assert "code" not in query


def test_refresh_rotates_the_refresh_token(http: httpx.Client, issuer: str) -> None:
    verifier, challenge = pkce_pair()
    tokens = exchange(http, issuer, sign_in(http, issuer, "carol", challenge), verifier).json()
    form = {"grant_type": "refresh_token", "client_id": CLIENT_ID}

    renewed = http.post(f"{issuer}/token", data=form | {"refresh_token": tokens["refresh_token"]})
    replayed = http.post(f"{issuer}/token", data=form | {"refresh_token": tokens["refresh_token"]})

    assert renewed.status_code == 200, renewed.text
    assert verify(renewed.json()["access_token"], issuer)["sub"] == "user-carol"
    assert renewed.json()["refresh_token"] != tokens["refresh_token"]
    assert (replayed.status_code, replayed.json()["error"]) == (400, "invalid_grant")


def test_token_errors_follow_rfc_6749(http: httpx.Client, issuer: str) -> None:
    unknown_grant = http.post(
        f"{issuer}/token", data={"grant_type": "password", "client_id": CLIENT_ID}
    )
    unknown_client = http.post(f"{issuer}/token", data={"grant_type": "refresh_token"})

    assert unknown_grant.status_code == 400
    assert unknown_grant.json()["error"] == "unsupported_grant_type"
    assert unknown_grant.headers["content-type"].startswith("application/json")
    assert (unknown_client.status_code, unknown_client.json()["error"]) == (401, "invalid_client")


def test_the_token_endpoint_grants_cors_to_the_app_origin_only(
    http: httpx.Client, issuer: str
) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}

    mine = http.options(f"{issuer}/token", headers=preflight | {"Origin": WEB_ORIGIN})
    theirs = http.options(f"{issuer}/token", headers=preflight | {"Origin": "https://evil.test"})
    posted = http.post(f"{issuer}/token", data={"grant_type": "x"}, headers={"Origin": WEB_ORIGIN})

    assert mine.status_code == 204
    assert mine.headers["access-control-allow-origin"] == WEB_ORIGIN
    assert "POST" in mine.headers["access-control-allow-methods"]
    assert "access-control-allow-origin" not in theirs.headers
    assert posted.headers["access-control-allow-origin"] == WEB_ORIGIN


def test_the_dev_token_endpoint_mints_for_loopback_callers_only(
    http: httpx.Client, issuer: str
) -> None:
    minted = http.post(f"{issuer}/dev/token", json={"user": "dave", "lifetime": 60})
    rebound = http.post(
        f"{issuer}/dev/token", json={"user": "dave"}, headers={"Host": "attacker.test"}
    )
    as_form = http.post(f"{issuer}/dev/token", data={"user": "dave"})

    claims = verify(minted.json()["access_token"], issuer)
    assert (claims["sub"], claims["exp"] - claims["iat"]) == ("user-dave", 60)
    assert rebound.status_code == 403
    assert as_form.status_code == 415


def test_mint_token_is_stable_per_user_name() -> None:
    issuer = idp.DevIssuer("http://127.0.0.1:1/", AUDIENCE, CLIENT_ID, (REDIRECT_URI,))

    first = jwt.decode(issuer.mint_token("Erin"), options={"verify_signature": False})
    second = jwt.decode(issuer.mint_token("erin", lifetime=30), options={"verify_signature": False})

    assert first["iss"] == "http://127.0.0.1:1"  # no trailing slash: the function compares exactly
    assert first["sub"] == second["sub"] == "user-erin"
    assert first["jti"] != second["jti"]
    assert second["exp"] - second["iat"] == 30
    with pytest.raises(ValueError):
        issuer.mint_token("no spaces allowed")


# -- the API Gateway stand-in -------------------------------------------------------------------
@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    handler = apigw.load_handler(ROOT / "tests" / "tools" / "fixtures", "echo_handler.handler")
    cors = apigw.Cors.from_configuration(TEMPLATE_CORS, [WEB_ORIGIN])
    routes = ["POST /echo", "GET /echo", "POST /echo/{item_id}/close", "GET /files/{path+}"]
    app = apigw.create_app(handler, routes=routes, cors=cors)
    with serving(lambda _: app) as url:
        yield url


def test_requests_become_payload_2_0_events(http: httpx.Client, gateway: str) -> None:
    answer = http.post(
        f"{gateway}/echo?a=1&a=2&b=x%20y",
        content=b'{"hello":"world"}',
        headers=[
            ("Content-Type", "application/json"),
            ("X-Multi", "one"),
            ("X-Multi", "two"),
            ("Cookie", "c=1; d=2"),
            ("User-Agent", "devstack-test"),
        ],
    )

    assert answer.status_code == 200
    event = answer.json()["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /echo"
    assert event["rawPath"] == "/echo"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["headers"]["x-multi"] == "one,two"
    assert event["headers"]["content-type"] == "application/json"
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["c=1", "d=2"]
    assert (event["body"], event["isBase64Encoded"]) == ('{"hello":"world"}', False)
    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/echo",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "devstack-test",
    }
    assert (context["stage"], context["routeKey"], context["accountId"]) == (
        "$default",
        "POST /echo",
        "123456789012",
    )
    assert context["domainName"] == urlsplit(gateway).netloc
    assert answer.headers["apigw-requestid"] == context["requestId"]
    assert abs(context["timeEpoch"] / 1000 - time.time()) < 60


@pytest.mark.parametrize(
    ("method", "path", "route", "parameters"),
    [
        ("POST", "/echo/rtc_1%2Fx/close", "POST /echo/{item_id}/close", {"item_id": "rtc_1/x"}),
        ("GET", "/files/a/b/c.txt", "GET /files/{path+}", {"path": "a/b/c.txt"}),
        ("GET", "/echo", "GET /echo", None),
    ],
)
def test_path_parameters_are_matched_like_the_gateway(
    http: httpx.Client,
    gateway: str,
    method: str,
    path: str,
    route: str,
    parameters: dict[str, str] | None,
) -> None:
    event = http.request(method, f"{gateway}{path}").json()["event"]

    assert event["routeKey"] == event["requestContext"]["routeKey"] == route
    assert event.get("pathParameters") == parameters
    assert event["rawPath"] == path


@pytest.mark.parametrize("path", ["/echo/a/b/close", "/echo//close", "/echo/x/close/more"])
def test_a_parameter_matches_one_segment_only(http: httpx.Client, gateway: str, path: str) -> None:
    assert http.post(f"{gateway}{path}").status_code == 404


def test_binary_bodies_arrive_base64_encoded(http: httpx.Client, gateway: str) -> None:
    payload = bytes(range(256))

    answer = http.post(
        f"{gateway}/echo", content=payload, headers={"Content-Type": "application/octet-stream"}
    )

    event = answer.json()["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_a_get_has_no_body_and_no_query_parameters(http: httpx.Client, gateway: str) -> None:
    event = http.get(f"{gateway}/echo").json()["event"]

    assert "body" not in event
    assert "queryStringParameters" not in event
    assert event["isBase64Encoded"] is False


def test_the_handler_gets_a_lambda_context(http: httpx.Client, gateway: str) -> None:
    answer = http.post(f"{gateway}/echo", json={})

    context = answer.json()["context"]
    assert context["function_name"] == "TokenFunction"
    assert context["memory_limit_in_mb"] == 512
    assert context["aws_request_id"] == answer.headers["apigw-requestid"]
    assert context["invoked_function_arn"].startswith("arn:aws:lambda:")
    assert 9000 < context["remaining_ms"] <= 10_000


def test_the_proxy_result_becomes_the_http_response(http: httpx.Client, gateway: str) -> None:
    answer = http.post(f"{gateway}/echo", json={})

    assert answer.headers["x-function"] == "echo"
    assert answer.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]


def test_a_result_without_status_code_is_a_200_json_document(
    http: httpx.Client, gateway: str
) -> None:
    answer = http.post(f"{gateway}/echo", content="bare", headers={"Content-Type": "text/plain"})

    assert answer.status_code == 200
    assert answer.json() == {"plain": "document"}


def test_a_failing_handler_is_a_gateway_500(http: httpx.Client, gateway: str) -> None:
    answer = http.post(f"{gateway}/echo", content="raise", headers={"Content-Type": "text/plain"})

    assert answer.status_code == 500
    assert answer.json() == {"message": "Internal Server Error"}


def test_a_handler_past_its_timeout_is_a_gateway_500(http: httpx.Client) -> None:
    def slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
        time.sleep(0.5)
        return {"statusCode": 200, "body": "too late"}

    app = apigw.create_app(slow, routes=["POST /slow"], timeout=0.1)
    with serving(lambda _: app) as url:
        answer = http.post(f"{url}/slow")

    assert answer.status_code == 500
    assert answer.json() == {"message": "Internal Server Error"}


# -- Lambda's Invoke API on the same stand-in -----------------------------------------------------
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:TokenFunction"


def lambda_client(url: str) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def invocable() -> Iterator[str]:
    handler = apigw.load_handler(ROOT / "tests" / "tools" / "fixtures", "echo_handler.handler")
    cors = apigw.Cors.from_configuration(TEMPLATE_CORS, [WEB_ORIGIN])
    app = apigw.create_app(handler, routes=["POST /echo"], cors=cors, aliases=["live"])
    with serving(lambda _: app) as url:
        yield url


@pytest.mark.parametrize(
    ("name", "qualifier", "arn"),
    [
        ("TokenFunction", None, FUNCTION_ARN),
        (FUNCTION_ARN, None, FUNCTION_ARN),
        (FUNCTION_ARN + ":live", None, FUNCTION_ARN + ":live"),
        ("123456789012:function:TokenFunction", "$LATEST", FUNCTION_ARN + ":$LATEST"),
        ("TokenFunction", "live", FUNCTION_ARN + ":live"),
    ],
)
def test_boto3_invokes_the_handler_with_the_raw_event(
    invocable: str, name: str, qualifier: str | None, arn: str
) -> None:
    event = {"action": "hangup", "call_id": "rtc_1", "user": "alice"}
    extra = {"Qualifier": qualifier} if qualifier else {}

    answer = lambda_client(invocable).invoke(
        FunctionName=name, Payload=json.dumps(event).encode(), **extra
    )

    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer
    assert json.loads(answer["Payload"].read()) == {"echo": event, "invoked_function_arn": arn}


def test_an_invocation_that_raises_is_a_function_error(invocable: str) -> None:
    answer = lambda_client(invocable).invoke(FunctionName="TokenFunction", Payload=b'{"raise": 1}')

    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert (error["errorType"], error["errorMessage"]) == ("RuntimeError", "asked to fail")


def test_an_invocation_past_its_timeout_is_a_function_error() -> None:
    def slow(event: dict[str, Any], context: Any) -> str:
        time.sleep(0.5)
        return "too late"

    with serving(lambda _: apigw.create_app(slow, timeout=0.1)) as url:
        answer = lambda_client(url).invoke(FunctionName="TokenFunction", Payload=b"{}")

    assert answer["FunctionError"] == "Unhandled"
    assert json.loads(answer["Payload"].read())["errorType"] == "Sandbox.Timedout"


def test_an_event_invocation_is_queued_and_run(http: httpx.Client) -> None:
    seen: list[Any] = []
    ran = threading.Event()

    def record(event: Any, context: Any) -> None:
        seen.append(event)
        ran.set()

    with serving(lambda _: apigw.create_app(record)) as url:
        client = lambda_client(url)
        queued = client.invoke(FunctionName="TokenFunction", InvocationType="Event", Payload=b"[1]")
        assert queued["StatusCode"] == 202 and queued["Payload"].read() == b""
        assert ran.wait(5)
        dry = client.invoke(FunctionName="TokenFunction", InvocationType="DryRun", Payload=b"[2]")
        assert dry["StatusCode"] == 204
    assert seen == [[1]]


def test_invoke_refusals_are_lambdas_errors(http: httpx.Client, invocable: str) -> None:
    client = lambda_client(invocable)
    for name, qualifier in [
        ("OtherFunction", None),
        ("TokenFunction", "v7"),
        ("arn:aws:lambda:us-east-1:999999999999:function:TokenFunction", None),
    ]:
        extra = {"Qualifier": qualifier} if qualifier else {}
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.invoke(FunctionName=name, Payload=b"{}", **extra)
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        client.invoke(FunctionName="TokenFunction", Payload=b"not json")
    with pytest.raises(client.exceptions.RequestTooLargeException):
        client.invoke(FunctionName="TokenFunction", Payload=b" " * (6 * 1024 * 1024 + 1))
    # Unsigned (what a web page could send): refused, and no CORS grant for this path.
    url = f"{invocable}/2015-03-31/functions/TokenFunction/invocations"
    unsigned = http.post(url, content=b"{}", headers={"Origin": WEB_ORIGIN})
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    assert "access-control-allow-origin" not in unsigned.headers
    preflight = http.options(
        url, headers={"Origin": WEB_ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize(("method", "path"), [("GET", "/other"), ("DELETE", "/echo")])
def test_undeclared_routes_are_404_like_api_gateway(
    http: httpx.Client, gateway: str, method: str, path: str
) -> None:
    answer = http.request(method, f"{gateway}{path}")

    assert answer.status_code == 404
    assert answer.json() == {"message": "Not Found"}


def test_cors_on_responses_is_the_gateways_decision(http: httpx.Client, gateway: str) -> None:
    allowed = http.post(f"{gateway}/echo", json={}, headers={"Origin": WEB_ORIGIN})
    foreign = http.post(f"{gateway}/echo", json={}, headers={"Origin": "https://evil.test"})
    no_origin = http.post(f"{gateway}/echo", json={})

    assert allowed.headers["access-control-allow-origin"] == WEB_ORIGIN
    assert allowed.headers["access-control-expose-headers"] == (
        "retry-after,ratelimit,ratelimit-policy"
    )
    # The function said "*"; the gateway's configuration wins.
    assert "access-control-allow-origin" not in foreign.headers
    assert no_origin.status_code == 200
    assert "access-control-allow-origin" not in no_origin.headers


def preflight(http: httpx.Client, url: str, **headers: str) -> httpx.Response:
    asked = {
        "Origin": WEB_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    asked |= {k.replace("_", "-"): v for k, v in headers.items()}
    return http.options(url, headers={k: v for k, v in asked.items() if v})


def test_an_allowed_preflight_is_answered_by_the_gateway(http: httpx.Client, gateway: str) -> None:
    answer = preflight(http, f"{gateway}/echo")

    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == WEB_ORIGIN
    assert answer.headers["access-control-allow-methods"] == "POST"
    assert answer.headers["access-control-allow-headers"] == "authorization,content-type"
    assert answer.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in answer.headers


@pytest.mark.parametrize(
    "asked",
    [
        {"Origin": "https://evil.test"},
        {"Origin": ""},
        {"Access_Control_Request_Method": "DELETE"},
        {"Access_Control_Request_Headers": "authorization,x-evil"},
    ],
    ids=["foreign-origin", "no-origin", "method", "header"],
)
def test_a_refused_preflight_grants_nothing(
    http: httpx.Client, gateway: str, asked: dict[str, str]
) -> None:
    answer = preflight(http, f"{gateway}/echo", **asked)

    assert answer.status_code == 204
    assert not [h for h in answer.headers if h.startswith("access-control-")]


# -- the whole stack ----------------------------------------------------------------------------
def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_whole_stack_signs_in_mints_a_secret_and_stops_clean(
    http: httpx.Client, tmp_path: Path
) -> None:
    with start_stack(log_dir=tmp_path) as stack:
        urls = stack.urls
        config = http.get(f"{urls['web']}/config.json").json()
        verifier, challenge = pkce_pair()
        # The shipped client-secret profile is opt-in: the page asks for its scope.
        code = sign_in(
            http, urls["issuer"], "alice", challenge, config["redirectUri"],
            "openid realtime:mint realtime:client_secrets",
        )  # fmt: skip
        tokens = http.post(
            f"{urls['issuer']}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "client_id": config["clientId"],
                "redirect_uri": config["redirectUri"],
            },
            headers={"Origin": urls["web"]},
        ).json()

        minted = http.post(
            f"{config['apiBaseUrl']}/v1/realtime/client_secrets",
            json={},
            headers={
                "Authorization": f"Bearer {tokens['access_token']}",
                "Origin": urls["web"],
            },
        )
        by_cli_token = http.post(
            f"{urls['web']}/v1/realtime/client_secrets",  # the API's one door
            json={},
            headers={
                "Authorization": f"Bearer {stack.token('bob', 'openid realtime:client_secrets')}"
            },
        )
        pgids = [p.pgid for p in stack.processes.values()]

    assert config == {
        "apiBaseUrl": urls["web"],  # the API under the page's own origin, as deployed
        "issuer": urls["issuer"],
        "clientId": CLIENT_ID,
        "redirectUri": urls["web"] + "/",
        "scopes": "openid realtime:mint",
    }
    assert minted.status_code == 200, (minted.text, (tmp_path / "api.log").read_text()[-3000:])
    assert minted.json()["value"].startswith("ek_")
    assert minted.headers["access-control-allow-origin"] == urls["web"]
    assert by_cli_token.status_code == 200, by_cli_token.text
    assert stack.leftovers() == []
    assert [g for g in pgids if group_alive(g)] == []


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def dev_command_env(tmp_path: Path) -> dict[str, str]:
    return os.environ | {"DEVSTACK_STATE": str(tmp_path / "state.json")}


def test_make_dev_prints_a_token_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    ports = [f"--{name}-port={free_port()}" for name in DEFAULT_PORTS]
    env = dev_command_env(tmp_path)
    dev = subprocess.Popen(
        [sys.executable, "-m", "devstack", "--quiet", *ports],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        state_file = tmp_path / "state.json"
        deadline = time.monotonic() + 60
        while not state_file.exists() and dev.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state_file.exists(), dev.communicate(timeout=10)
        children = children_of(dev.pid)
        state = json.loads(state_file.read_text())

        token = subprocess.run(
            [sys.executable, "-m", "devstack.token", "alice"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        dev.send_signal(signal.SIGINT)
        out, err = dev.communicate(timeout=30)
    finally:
        if dev.poll() is None:
            dev.kill()

    assert token.returncode == 0, token.stderr
    assert jwt.decode(token.stdout.strip(), options={"verify_signature": False})["sub"] == (
        "user-alice"
    )
    assert "make token USER=alice" in out
    assert "curl" in out
    assert dev.returncode == 0, err
    assert "Traceback" not in err
    assert sorted(children) == sorted(state["pids"].values())
    assert sorted(state["pids"]) == [
        "api",
        "aws",
        "issuer",
        "openai",
        "scheduler",
        "watcher",
        "web",
    ]
    assert [pid for pid in children if alive(pid)] == []
    assert not state_file.exists()


def test_the_token_command_says_when_no_stack_is_running(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devstack.token", "alice"],
        cwd=ROOT,
        env=dev_command_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert "no local stack is running" in result.stderr
    assert "make dev" in result.stderr


@contextmanager
def listening() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_busy_port_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    others = [f"--{name}-port={free_port()}" for name in DEFAULT_PORTS if name != "api"]
    with listening() as busy:
        result = subprocess.run(
            [sys.executable, "-m", "devstack", f"--api-port={busy}", *others],
            cwd=ROOT,
            env=dev_command_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"devstack: port {busy} (api) is already in use on 127.0.0.1; "
        "choose another with --api-port or DEVSTACK_API_PORT"
    ]


def test_a_busy_port_stops_start_stack_before_anything_runs() -> None:
    with listening() as busy, pytest.raises(StackError) as raised:
        start_stack({"issuer": busy})

    assert [(b.name, b.port) for b in raised.value.busy] == [("issuer", busy)]


def test_a_component_on_a_busy_port_exits_2_without_a_traceback() -> None:
    with listening() as busy:
        result = subprocess.run(
            [sys.executable, "-m", "devstack.idp", f"--port={busy}", "--redirect-uri=x"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert result.returncode == 2
    assert result.stderr.strip() == f"issuer: port {busy} (issuer) is already in use on 127.0.0.1"


@pytest.mark.stack
def test_the_page_opened_on_another_loopback_name_is_sent_to_its_own_origin(
    tmp_path: Path,
) -> None:
    """A newcomer who types http://127.0.0.1:5173 for http://localhost:5173 would sign in from
    an origin the identity provider does not send back to: the page sends them to its own."""
    (tmp_path / "index.html").write_text("<!doctype html><title>page</title>")
    port = free_port()
    origin = f"http://localhost:{port}"
    app = web_page.create_app(tmp_path, {"issuer": "x"}, origin=origin)
    with serving(lambda _: app, port=port) as url:
        assert url == f"http://127.0.0.1:{port}"
        moved = httpx.get(f"{url}/index.html?x=1", follow_redirects=False)
        kept = httpx.post(f"{url}/v1/realtime/calls", content=b"v=0", follow_redirects=False)
        here = httpx.get(f"{origin}/index.html")

    assert moved.status_code == 308 and moved.headers["location"] == f"{origin}/index.html?x=1"
    assert kept.status_code == 308  # a POST stays a POST on the right origin
    assert here.status_code == 200 and "<title>page</title>" in here.text
