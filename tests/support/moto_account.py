"""moto's server as the deploy's preflight reads it: one more Lambda call, and a stack.

moto models Lambda's concurrency (each function's reservation, and the account's quota
when MOTO_LAMBDA_CONCURRENCY_QUOTA is set: it then refuses a reservation that would leave
fewer than 100 unreserved) but does not serve GetAccountSettings. `serve_account_settings`
adds it to moto's own Lambda routes, answered from that same model: the quota (1000 when
unset, Lambda's usual default) and what the functions leave unreserved.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.awslambda import urls as lambda_urls
from moto.awslambda.models import lambda_backends
from moto.server import ThreadedMotoServer

from devstack.aws import ACCOUNT_ID
from devstack.net import free_port

ACCOUNT_SETTINGS = r"{0}/(?P<api_version>[^/]+)/account-settings/?$"
QUOTA_VARIABLE = "MOTO_LAMBDA_CONCURRENCY_QUOTA"


def _account_settings(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    region = full_url.split("lambda.")[1].split(".")[0] if "lambda." in full_url else "us-east-1"
    quota = int(os.environ.get(QUOTA_VARIABLE, "1000"))
    functions = list(lambda_backends[ACCOUNT_ID][region].list_functions())
    reserved = sum(int(f.reserved_concurrency or 0) for f in functions)
    body = {
        "AccountLimit": {
            "TotalCodeSize": 80530636800,
            "CodeSizeUnzipped": 262144000,
            "CodeSizeZipped": 52428800,
            "ConcurrentExecutions": quota,
            "UnreservedConcurrentExecutions": quota - reserved,
        },
        "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": len(functions)},
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(body)


def serve_account_settings() -> None:
    """Adds GetAccountSettings to moto's Lambda routes (before its server builds them)."""
    lambda_urls.url_paths.setdefault(ACCOUNT_SETTINGS, _account_settings)


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on a free loopback port, with GetAccountSettings; its URL."""
    serve_account_settings()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def function_zip() -> bytes:
    """A deployment package moto accepts (it never runs it here)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return None\n")
    return buffer.getvalue()
