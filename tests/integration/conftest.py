"""Fixtures shared by the server-owned calls suites."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from devstack.lambda_events import http_event
from tests.support.aws import Aws, botocore_session
from tests.support.env import BASE_ENV, ORIGIN
from tests.support.handler import WATCHER, Reply, invoke, watchers_attach
from tests.support.identity import Issuer
from tests.support.internet import OFFER_SDP, FakeInternet


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
    from token_vendor.api import deps

    def make(
        env: dict[str, str] | None = None,
        http: httpx.Client | None = None,
        *,
        attach: bool = True,
        attach_after: float = 0.0,
    ) -> Any:
        lambda_client = botocore_session().create_client("lambda", region_name="us-east-1")
        if attach:
            watchers_attach(lambda_client, attach_after)
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
