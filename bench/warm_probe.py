"""Warm overhead: CPU per warm request of the real handler, the network answered in-process
with zero latency, next to the work no implementation can skip, measured in the same run:
one RS256 signature check and the SigV4 signing of one DynamoDB request.

Runs in the function-only environment; prints one JSON line.
"""

import contextlib
import io
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import httpx
import jwt
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from token_vendor.api import app, deps
from token_vendor.api.deps import Container
from token_vendor.core import aws

from bench.signing import BenchKey
from devstack.lambda_events import LambdaContext, http_event
from devstack.openai_schema import build_session

ISSUER = "https://issuer.bench"
KEY = BenchKey("k")
ENV = {
    "OPENAI_SECRET_ID": "k", "OPENAI_BASE_URL": "https://api.openai.bench/v1", "QUOTA_TABLE": "t",
    "QUOTAS": "1000000/minute", "AUTH_ISSUER": ISSUER, "AUTH_AUDIENCE": "app",
    "AUTH_JWKS_URL": f"{ISSUER}/jwks.json", "AWS_REGION": "us-east-1",
}  # fmt: skip


class _Raw(io.BytesIO):
    def stream(self, **kwargs: Any) -> Iterator[bytes]:  # botocore reads streaming bodies so
        yield self.getvalue()


def aws_answer(request: AWSRequest, **kwargs: Any) -> AWSResponse:
    """A zero-latency AWS: the request was built and signed for real; only the wire is skipped."""
    target = request.headers.get("X-Amz-Target", b"").decode()
    if target.endswith("UpdateItem"):
        names = json.loads(request.body)["ExpressionAttributeNames"].values()
        body: dict[str, Any] = {"Attributes": {n: {"N": "1"} for n in names}}
    else:
        body = {"ARN": "arn", "Name": "k", "SecretString": "sk-bench-" + "b" * 40}
    return AWSResponse(
        request.url,
        200,
        {"content-type": "application/x-amz-json-1.0"},
        _Raw(json.dumps(body).encode()),
    )


def web_answer(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/jwks.json":
        return httpx.Response(200, json={"keys": [KEY.jwk()]})
    body = json.loads(request.content)
    return httpx.Response(
        200,
        json={
            "value": "ek_" + secrets.token_hex(16),
            "expires_at": int(time.time()) + 60,
            "session": build_session(body["session"]),  # OpenAI's full shape
        },
    )


def client(session: botocore.session.Session, service: str) -> Any:
    c = session.create_client(
        service,
        region_name="us-east-1",
        aws_access_key_id="AKIDBENCH",
        aws_secret_access_key="bench",  # noqa: S106  a fake AWS that accepts any key
        config=aws.DYNAMODB,
    )
    c.meta.events.register_first("before-send", aws_answer)
    return c


def per_op(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(n, 50)):
        fn()
    started = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - started) / n * 1e6  # microseconds


def breakdown(container: Container, token: str, n: int) -> dict[str, float]:
    """Where the time goes: each adapter alone, through the same clients (CPU us per call)."""
    from token_vendor.core.deadline import Deadline

    vendor = container.vendor
    caller = vendor.authenticate(token, Deadline(5))
    body = {
        "expires_after": {"anchor": "created_at", "seconds": 60},
        "session": {"type": "realtime", "model": "gpt-realtime-2.1", "instructions": "x"},
    }
    return {
        "JWT verification (PyJWT signature + our checks)": per_op(
            lambda: vendor.authenticate(token, Deadline(5)), n
        ),
        "quota: one UpdateItem through botocore": per_op(
            lambda: vendor._quota.consume(caller.user_hash, Deadline(5)), n
        ),
        "OpenAI mint through httpx (MockTransport)": per_op(
            lambda: vendor._minter.create_client_secret(body, "u", Deadline(5)), n
        ),
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    session = botocore.session.get_session()
    container = deps.build_container(
        ENV,
        http=httpx.Client(transport=httpx.MockTransport(web_answer)),
        dynamodb=client(session, "dynamodb"),
        secretsmanager=client(session, "secretsmanager"),
    )
    handler = app.create_handler(lambda: container)
    token = KEY.token(ISSUER, "u")
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    ev = http_event("POST", "/v1/realtime/client_secrets", headers, "{}")
    ctx = LambdaContext(9000)

    def request() -> None:
        assert handler(ev, ctx)["statusCode"] == 200

    signing, signature = token.rsplit(".", 1)
    raw_signature = jwt.utils.base64url_decode(signature)
    public = KEY.private.public_key()

    def verify() -> None:
        public.verify(raw_signature, signing.encode(), padding.PKCS1v15(), hashes.SHA256())

    signer = SigV4Auth(Credentials("AKIDBENCH", "bench"), "dynamodb", "us-east-1")
    body = json.dumps({"TableName": "t", "Key": {"pk": {"S": "quota#" + "a" * 32}}})

    def sign() -> None:
        req = AWSRequest(
            "POST",
            "https://dynamodb.us-east-1.amazonaws.com/",
            data=body,
            headers={"X-Amz-Target": "DynamoDB_20120810.UpdateItem"},
        )
        signer.add_auth(req)

    # The function's log lines go where Lambda sends them (a pipe it reads); here, nowhere.
    handler_stream = app.logger.registered_handler
    assert isinstance(handler_stream, logging.StreamHandler)
    handler_stream.setStream(open(os.devnull, "w"))  # noqa: SIM115
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        ours = per_op(request, n)
    reference = per_op(verify, n) + per_op(sign, n)
    parts = breakdown(container, token, n)
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        with contextlib.redirect_stdout(open(os.devnull, "w")):
            profile = cProfile.Profile()
            profile.runcall(lambda: [handler(ev, ctx) for _ in range(300)])
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(60)
    print(
        json.dumps(
            {
                "request_us": ours,
                "reference_us": reference,
                "verify_us": per_op(verify, n),
                "sign_us": per_op(sign, n),
                "n": n,
                "parts": parts,
            }
        )
    )


if __name__ == "__main__":
    main()
