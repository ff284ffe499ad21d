"""Battery 3: faults of every dependency, each with its status, headers and body.

DynamoDB faults come from a real loopback server, so botocore's retry configuration in
core/aws.py (standard mode, 3 attempts, 1 s connect, 2 s read) is what gets exercised.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from devstack.lambda_events import LambdaContext, http_event
from tests.support.aws import aws_client
from tests.support.env import BASE_ENV, SECRET_ID
from tests.support.faults import OPENAI_FAULTS, Secrets, good, handler_with, respond
from tests.support.handler import Reply, invoke
from tests.support.identity import Issuer
from tests.support.internet import OPENAI_KEY, FakeInternet, openai_error


def call(handler: Any, issuer: Issuer, remaining_ms: int = 10_000) -> Reply:
    event = http_event(headers={"authorization": f"Bearer {issuer.token()}"})
    return invoke(handler, event, LambdaContext(remaining_ms=remaining_ms))


def assert_problem(reply: Reply, status: int, retry_after: bool) -> None:
    assert reply.status == status, reply.body
    assert reply.header("content-type") == "application/problem+json"
    assert reply.json["status"] == status and "Traceback" not in reply.body
    assert (reply.header("retry-after") is not None) is retry_after


# --- DynamoDB, through botocore's own retries ----------------------------------------------


@pytest.mark.stack
def test_dynamodb_throttling_is_retried_then_503(
    app_module: Any, internet: FakeInternet, issuer: Issuer, faulty_dynamodb: Any
) -> None:
    faulty_dynamodb.script = ["throttle"] * 5
    handler = handler_with(app_module, internet, faulty_dynamodb.url, Secrets())

    reply = call(handler, issuer)

    assert_problem(reply, 503, retry_after=True)
    assert faulty_dynamodb.attempts == 3  # total_max_attempts in core.aws.DYNAMODB
    assert internet.openai_requests() == []  # fail closed: no token without a count


@pytest.mark.stack
def test_dynamodb_throttled_twice_then_ok_mints(
    app_module: Any, internet: FakeInternet, issuer: Issuer, faulty_dynamodb: Any
) -> None:
    faulty_dynamodb.script = ["throttle", "error"]
    handler = handler_with(app_module, internet, faulty_dynamodb.url, Secrets())

    assert call(handler, issuer).status == 200
    assert faulty_dynamodb.attempts == 3


@pytest.mark.stack
def test_dynamodb_read_timeout_is_retried(
    app_module: Any, internet: FakeInternet, issuer: Issuer, faulty_dynamodb: Any
) -> None:
    faulty_dynamodb.script = ["hang"]
    handler = handler_with(app_module, internet, faulty_dynamodb.url, Secrets())

    assert call(handler, issuer).status == 200
    assert faulty_dynamodb.attempts == 2


@pytest.mark.stack
def test_dynamodb_timing_out_on_every_attempt_is_503_inside_the_lambda_timeout(
    app_module: Any, internet: FakeInternet, issuer: Issuer, faulty_dynamodb: Any
) -> None:
    faulty_dynamodb.script = ["hang"] * 5
    handler = handler_with(app_module, internet, faulty_dynamodb.url, Secrets())
    started = time.monotonic()

    reply = call(handler, issuer)

    assert_problem(reply, 503, retry_after=True)
    assert faulty_dynamodb.attempts == 3  # total_max_attempts, each cut at the 2 s read timeout
    assert time.monotonic() - started < 9.5  # inside the 10 s the context gave
    assert internet.openai_requests() == []


@pytest.mark.stack
def test_dynamodb_retries_stop_when_the_lambda_has_no_time_for_them(
    app_module: Any, internet: FakeInternet, issuer: Issuer, faulty_dynamodb: Any
) -> None:
    """Found by this battery: botocore's retries cannot see the Lambda's deadline, and with
    4 s left the function ran 6 s over three attempts (Lambda would have killed it mid-way,
    the unit spent and no answer). Each attempt now needs the time one attempt can take."""
    faulty_dynamodb.script = ["hang"] * 5
    handler = handler_with(app_module, internet, faulty_dynamodb.url, Secrets())
    started = time.monotonic()

    reply = call(handler, issuer, remaining_ms=4000)

    elapsed = time.monotonic() - started
    assert_problem(reply, 503, retry_after=True)
    assert faulty_dynamodb.attempts == 1 and elapsed < 3.5, (faulty_dynamodb.attempts, elapsed)
    assert internet.openai_requests() == []


@pytest.mark.stack
def test_dynamodb_unreachable_is_503(
    app_module: Any, internet: FakeInternet, issuer: Issuer
) -> None:
    handler = handler_with(app_module, internet, "http://127.0.0.1:9", Secrets())

    assert_problem(call(handler, issuer), 503, retry_after=True)


# --- Secrets Manager ---------------------------------------------------------------------------


@pytest.mark.stack
def test_secrets_manager_down_cold_is_503(
    app_module: Any, internet: FakeInternet, issuer: Issuer, faulty_dynamodb: Any
) -> None:
    secrets = Secrets()
    secrets.down = True
    handler = handler_with(app_module, internet, faulty_dynamodb.url, secrets)

    reply = call(handler, issuer)

    assert_problem(reply, 503, retry_after=True)
    assert internet.openai_requests() == []


@pytest.mark.stack
def test_secrets_manager_down_warm_keeps_minting(
    app_module: Any, internet: FakeInternet, issuer: Issuer, faulty_dynamodb: Any
) -> None:
    secrets = Secrets()
    handler = handler_with(app_module, internet, faulty_dynamodb.url, secrets)
    assert call(handler, issuer).status == 200
    secrets.down = True

    assert [call(handler, issuer).status for _ in range(2)] == [200, 200]


@pytest.mark.stack
def test_openai_401_rereads_the_secret_and_retries_with_the_new_key(
    app_module: Any, internet: FakeInternet, issuer: Issuer, faulty_dynamodb: Any
) -> None:
    secrets = Secrets("sk-revoked", OPENAI_KEY)  # the key was rotated after our first read
    handler = handler_with(app_module, internet, faulty_dynamodb.url, secrets)

    reply = call(handler, issuer)

    assert reply.status == 200 and secrets.reads == 2
    assert [r.headers["authorization"] for r in internet.openai_requests()] == [
        "Bearer sk-revoked",
        f"Bearer {OPENAI_KEY}",
    ]


def test_openai_401_after_a_rotation_in_secrets_manager_uses_the_new_key(
    mint: Any, aws: Any, internet: FakeInternet
) -> None:
    """The key is rotated in Secrets Manager (moto) between the two attempts of one mint."""
    assert mint().status == 200  # the old key is now cached in the container
    rotated = "sk-rotated-" + "r" * 40

    def rotate_then_refuse(request: httpx.Request) -> httpx.Response:
        aws.secretsmanager.put_secret_value(SecretId=SECRET_ID, SecretString=rotated)
        internet.openai_key = rotated  # OpenAI no longer takes the old key
        return openai_error(401, "invalid_api_key", "Incorrect API key provided.")

    internet.openai_script = [rotate_then_refuse]

    reply = mint()

    assert reply.status == 200 and reply.json["value"] == internet.minted[-1]
    assert [r.headers["authorization"] for r in internet.openai_requests()] == [
        f"Bearer {OPENAI_KEY}",
        f"Bearer {OPENAI_KEY}",
        f"Bearer {rotated}",
    ]
    assert mint().status == 200  # the new key stays cached: no further 401
    assert internet.openai_requests()[-1].headers["authorization"] == f"Bearer {rotated}"


@pytest.mark.stack
def test_openai_401_after_the_reread_is_502_and_logged_as_an_error(
    app_module: Any, internet: FakeInternet, issuer: Issuer, faulty_dynamodb: Any, logs: Any
) -> None:
    handler = handler_with(app_module, internet, faulty_dynamodb.url, Secrets("sk-revoked"))

    reply = call(handler, issuer)

    assert_problem(reply, 502, retry_after=False)
    assert any(
        r.get("level") == "ERROR" and r.get("dependency") == "openai" for r in logs.records()
    )


# --- OpenAI, every failure it can answer with ------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "status", "retry_after", "attempts"),
    OPENAI_FAULTS.values(),
    ids=OPENAI_FAULTS.keys(),
)
def test_openai_fault(
    mint: Any,
    internet: FakeInternet,
    aws: Any,
    script: list[Any],
    status: int,
    retry_after: bool,
    attempts: int,
) -> None:
    internet.openai_script = list(script)

    reply = mint()

    if status == 200:
        assert reply.status == 200
    else:
        assert_problem(reply, status, retry_after)
        assert "upstream says no" not in reply.body  # never OpenAI's text verbatim
        units = sum(
            int(v["N"]) for i in aws.quota_items() for k, v in i.items() if k.startswith("c_minute")
        )
        assert units == 0  # the unit came back
    assert len(internet.openai_requests()) == attempts


# --- the Lambda's remaining time --------------------------------------------------------------


class Hang(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        time.sleep(5)


@pytest.mark.stack
def test_a_hanging_openai_is_cut_at_the_lambda_deadline(
    app_module: Any, internet: FakeInternet, issuer: Issuer, faulty_dynamodb: Any
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hanging_base = f"http://127.0.0.1:{server.server_port}/v1"

    class Route(httpx.BaseTransport):
        """The key set from the fake internet; OpenAI over a real socket that never answers."""

        def __init__(self) -> None:
            self.real = httpx.HTTPTransport()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if str(request.url).startswith(hanging_base):
                return self.real.handle_request(request)
            return internet.handle(request)

    from token_vendor.api import deps
    from token_vendor.core import aws

    client = aws_client(faulty_dynamodb.url, aws.DYNAMODB)
    env = BASE_ENV | {"OPENAI_BASE_URL": hanging_base}
    # Built before the clock starts: this measures the request, not a cold container.
    scheduler = aws_client(faulty_dynamodb.url, service="scheduler")
    handler = app_module.create_handler(
        lambda: deps.build_container(
            env,
            http=httpx.Client(transport=Route()),
            dynamodb=client,
            secretsmanager=Secrets(),
            scheduler=scheduler,
        )
    )
    started = time.monotonic()

    reply = call(handler, issuer, remaining_ms=3500)

    elapsed = time.monotonic() - started
    server.shutdown()
    assert_problem(reply, 504, retry_after=False)
    assert elapsed < 3.5, f"the function ran {elapsed:.1f}s of a 3.5 s budget"


def test_with_too_little_time_left_nothing_is_started(
    mint: Any, internet: FakeInternet, aws: Any
) -> None:
    reply = mint(context=LambdaContext(remaining_ms=2000))

    assert_problem(reply, 503, retry_after=True)
    assert internet.openai_requests() == [] and aws.quota_items() == []  # no unit, no call


def test_no_retry_is_started_that_could_not_finish(
    mint: Any, internet: FakeInternet, aws: Any
) -> None:
    internet.openai_script = [respond(503), good]

    reply = mint(context=LambdaContext(remaining_ms=2600))

    assert_problem(reply, 503, retry_after=True)
    assert len(internet.openai_requests()) == 1  # a second attempt would not fit
    units = sum(
        int(v["N"]) for i in aws.quota_items() for k, v in i.items() if k.startswith("c_minute")
    )
    assert units == 0


@pytest.mark.parametrize("status", [400, 403, 404])
def test_an_openai_refusal_is_logged_with_its_request_id(
    mint: Any, internet: FakeInternet, logs: Any, status: int
) -> None:
    internet.openai_script = [respond(status, "some_code")]

    reply = mint()

    assert_problem(reply, 502, retry_after=False)
    assert reply.json["detail"] == "The Realtime API did not provide a usable client secret."
    logged = [r for r in logs.records() if r.get("dependency") == "openai"]
    assert logged and "req_err" in logged[0]["reason"] and f"HTTP {status}" in logged[0]["reason"]
