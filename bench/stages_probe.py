"""Where the token function's cold start goes: one fresh process of its environment (as
probe.py's), each stage timed in the order the first request meets it; prints one JSON line.

1. The libraries, imported one by one (`botocore.session` first: `import boto3` pays it
   too; httpcore, which httpx imports when its first client is built, after httpx), then
   the function's own modules (and whatever they import besides).
2. The container, built as the first request builds it: the botocore session, each client
   and the HTTP client (its TLS context) timed where they are created.
3. The first request (a mint) against the loopback fakes, the container already built.

Each stage is wall time and the process's CPU time, in milliseconds. This probe reaches into
the function's modules (it wraps `core.aws.client` and `httpx.Client`); `probe.py handler`
measures the cold start itself, untouched.
"""

import json
import os
import time
from collections.abc import Callable
from typing import Any

from devstack.lambda_events import LambdaContext, http_event

stages: dict[str, list[float]] = {}


def timed(name: str, run: Callable[[], Any]) -> Any:
    started, cpu_started = time.perf_counter(), time.process_time()
    result = run()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    stage = stages.setdefault(name, [0.0, 0.0])  # a stage met twice is summed
    stage[0] += wall * 1000
    stage[1] += cpu * 1000
    return result


LIBRARIES = (
    ("import botocore.session (also in the floor)", "botocore.session"),
    ("import aws_lambda_powertools (Logger, Metrics)", "aws_lambda_powertools.metrics"),
    ("import cryptography.x509 (PyJWT's algorithms import it)", "cryptography.x509"),
    ("import jwt (PyJWT, with the rest of cryptography it uses)", "jwt"),
    ("import httpx", "httpx"),
    ("import httpcore (httpx imports it when a client is built)", "httpcore"),
)


def main() -> None:
    import functools
    import importlib

    for name, module in LIBRARIES:
        timed(name, functools.partial(importlib.import_module, module))
    app = timed(
        "import token_vendor.api.app (our modules, the rest)",
        lambda: importlib.import_module("token_vendor.api.app"),
    )
    import httpx
    from token_vendor.core import aws

    client = aws.client
    aws.client = lambda service, *args: timed(
        f"container: botocore client `{service}`", lambda: client(service, *args)
    )
    http_init = httpx.Client.__init__

    def timed_http_init(self: httpx.Client, *args: Any, **kwargs: Any) -> None:
        timed(
            "container: httpx.Client (its TLS context, certifi's CA bundle)",
            lambda: http_init(self, *args, **kwargs),
        )

    httpx.Client.__init__ = timed_http_init  # type: ignore[method-assign]
    timed("container: botocore session", aws._session)
    container_started = time.perf_counter(), time.process_time()
    app._api.container  # noqa: B018  built as the first request would build it
    container = (
        (time.perf_counter() - container_started[0]) * 1000,
        (time.process_time() - container_started[1]) * 1000,
    )
    parts = [v for k, v in stages.items() if k.startswith("container: ") and "session" not in k]
    stages["container: settings, adapters, the rest"] = [
        container[0] - sum(p[0] for p in parts),
        container[1] - sum(p[1] for p in parts),
    ]
    headers = {
        "authorization": f"Bearer {os.environ['BENCH_TOKEN']}",
        "content-type": "application/json",
    }
    event = http_event("POST", "/v1/realtime/client_secrets", headers, "{}")
    response = timed(
        "first request (a mint: the key set, DynamoDB, the secret, OpenAI)",
        lambda: app.handler(event, LambdaContext(9000)),
    )
    assert response["statusCode"] == 200, response
    print(json.dumps(stages))


if __name__ == "__main__":
    main()
