"""Fixtures shared by the server-owned calls suites."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import botocore.session
import httpx
import pytest
from botocore.stub import ANY, Stubber

from devstack.lambda_events import http_event
from tests.conftest import BASE_ENV, ORIGIN, Aws, Reply, invoke
from tests.fakes import OFFER_SDP, FakeInternet, Issuer

WATCHER = "stack-call-watcher"


@pytest.fixture
def place(handler: Any, issuer: Issuer) -> Any:
    """POST /v1/realtime/calls with the raw offer, as `user`, through `with_handler`."""

    def post(*, user: str = "user-1", with_handler: Any = None) -> Reply:
        headers = {
            "authorization": f"Bearer {issuer.token(user)}",
            "origin": ORIGIN,
            "content-type": "application/sdp",
        }
        event = http_event("POST", "/v1/realtime/calls", headers=headers, body=OFFER_SDP)
        return invoke(with_handler or handler, event)

    return post


@pytest.fixture
def make_watched_handler(
    app_module: Any, aws: Aws, internet: FakeInternet
) -> Callable[..., tuple[Any, Any]]:
    """A real handler that starts a watcher per call (WATCHER_FUNCTION_NAME), and the Lambda
    client it starts them with, for a Stubber."""
    from token_vendor import deps

    def make(env: dict[str, str] | None = None, http: httpx.Client | None = None) -> Any:
        lambda_client = botocore.session.get_session().create_client(
            "lambda", region_name="us-east-1"
        )
        handler = app_module.create_handler(
            lambda: deps.build_container(
                BASE_ENV | {"WATCHER_FUNCTION_NAME": WATCHER} | (env or {}),
                http=http or internet.client(),
                dynamodb=aws.dynamodb,
                secretsmanager=aws.secretsmanager,
                scheduler=aws.scheduler,
                lambda_client=lambda_client,
                log=app_module.logger,
            )
        )
        return handler, lambda_client

    return make


def expect_watcher_start(stub: Stubber) -> None:
    """One asynchronous start of the call watcher, by name, accepted (202)."""
    stub.add_response(
        "invoke",
        {"StatusCode": 202},
        {"FunctionName": WATCHER, "InvocationType": "Event", "Payload": ANY},
    )
