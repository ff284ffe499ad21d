"""Faulty dependencies for the fault batteries: Secrets Manager as the key store sees it, a
DynamoDB on loopback that answers per a script, the function wired to them, and every failure
OpenAI can answer a mint with."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx

from tests.support.aws import aws_client
from tests.support.env import BASE_ENV
from tests.support.internet import OPENAI_KEY, FakeInternet, openai_error, openai_secret_response


class Secrets:
    """Secrets Manager as the key store sees it: values in order, or a failure."""

    def __init__(self, *values: str) -> None:
        self.values = list(values) or [OPENAI_KEY]
        self.reads = 0
        self.down = False

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        from botocore.exceptions import EndpointConnectionError

        if self.down:
            raise EndpointConnectionError(endpoint_url="https://secretsmanager.test")
        value = self.values[min(self.reads, len(self.values) - 1)]
        self.reads += 1
        return {"SecretString": value}


class FaultyDynamoDB(BaseHTTPRequestHandler):
    """Answers UpdateItem per a script: 'throttle', 'error', 'hang', or 'ok'."""

    script: list[str] = []
    attempts = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        cls.attempts += 1
        action = cls.script.pop(0) if cls.script else "ok"
        if action == "hang":
            time.sleep(2.5)  # past the 2 s read timeout
            return
        if action in ("throttle", "error"):
            kind = (
                "ProvisionedThroughputExceededException"
                if action == "throttle"
                else "InternalServerError"
            )
            status = 400 if action == "throttle" else 500
            self._send(
                status, {"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", "message": "fault"}
            )
            return
        names = body["ExpressionAttributeNames"].values()
        self._send(200, {"Attributes": {n: {"N": "1"} for n in names if n != "ttl"}})

    def _send(self, status: int, document: dict[str, Any]) -> None:
        raw = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def handler_with(
    app_module: Any,
    internet: FakeInternet,
    dynamodb_url: str,
    secrets: Secrets,
    http: httpx.Client | None = None,
) -> Callable[..., dict[str, Any]]:
    from token_vendor.api import deps
    from token_vendor.core import aws

    client = aws_client(dynamodb_url, aws.DYNAMODB)
    return app_module.create_handler(
        lambda: deps.build_container(
            BASE_ENV, http=http or internet.client(), dynamodb=client, secretsmanager=secrets
        )
    )


def respond(status: int, code: str | None = None, headers: dict[str, str] | None = None) -> Any:
    return lambda request: openai_error(status, code, "upstream says no", headers)


def good(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=openai_secret_response(json.loads(request.content)))


def raises(exc: type[Exception]) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc("simulated", request=request)  # type: ignore[call-arg]

    return answer


OPENAI_FAULTS = {
    "rate_limited_twice": (
        [respond(429, "rate_limit_exceeded", {"retry-after": "1"})] * 2,
        503,
        True,
        2,
    ),
    "insufficient_quota": ([respond(429, "insufficient_quota")] * 2, 503, True, 2),
    "rate_limited_once_then_ok": (
        [respond(429, "rate_limit_exceeded", {"retry-after": "1"}), good],
        200,
        False,
        2,
    ),
    "server_error_twice": ([respond(500)] * 2, 503, True, 2),
    "unavailable_then_ok": ([respond(503), good], 200, False, 2),
    "request_timeout_408_then_ok": ([respond(408), good], 200, False, 2),
    "conflict_409_twice": ([respond(409)] * 2, 503, True, 2),
    "connection_error_twice": ([raises(httpx.ConnectError)] * 2, 503, True, 2),
    "bad_request": ([respond(400, "unknown_parameter")], 502, False, 1),
    "forbidden_region": ([respond(403, "unsupported_country_region_territory")], 502, False, 1),
    "not_found": ([respond(404)], 502, False, 1),
    "read_timeout": ([raises(httpx.ReadTimeout)], 504, False, 1),
    "malformed_json_200": (
        [lambda r: httpx.Response(200, content=b'{"value": "ek_')],
        502,
        False,
        1,
    ),
    "no_value_200": (
        [lambda r: httpx.Response(200, json={"expires_at": 1, "session": {}})],
        502,
        False,
        1,
    ),
    "expired_secret_200": (
        [lambda r: httpx.Response(200, json=openai_secret_response(json.loads(r.content), now=1))],
        502,
        False,
        1,
    ),
    "oversized_200": (
        [lambda r: httpx.Response(200, content=b" " * (2 * 1024 * 1024))],
        502,
        False,
        1,
    ),
}
