"""The API's one public door on the local stack, as deployed with ApiDoor=cloudfront: the web
server stands in for the page's distribution (it adds the door's secret, read from moto as
CloudFormation reads it), and API Gateway's stand-in is the API's own `execute-api` URL. A
request that skips the distribution, with a valid token, is a 403 problem that spends nothing:
no quota counted, nothing asked of OpenAI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack import aws
from devstack.stack import ORIGIN_SECRET_ID, SECRETS_SCOPE, TABLE, Stack, start_stack
from tests.support.internet import OFFER_SDP
from tests.support.stack import emulator_state

pytestmark = pytest.mark.stack
SCOPES = f"openid realtime:mint {SECRETS_SCOPE}"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with start_stack() as running:
        yield running


def table(stack: Stack) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = aws.client("dynamodb", stack.urls["aws"]).scan(TableName=TABLE)[
        "Items"
    ]
    return items


def spent(stack: Stack) -> tuple[Any, ...]:
    """Everything a request could have spent: the ledger's items, OpenAI's secrets and calls."""
    state = emulator_state(stack)
    return (
        sorted(str(item) for item in table(stack)),
        state["secrets_minted"],
        state["calls_total"],
        state["requests"],
    )


def door_value(stack: Stack) -> str:
    value: str = aws.client("secretsmanager", stack.urls["aws"]).get_secret_value(
        SecretId=ORIGIN_SECRET_ID
    )["SecretString"]
    return value


def mint(base: str, token: str, **headers: str) -> httpx.Response:
    return httpx.post(
        base + "/v1/realtime/client_secrets",
        json={},
        headers={"Authorization": f"Bearer {token}"} | headers,
        timeout=15,
    )


def assert_direct_access(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith(":direct-access")


def test_through_the_distribution_the_api_answers(stack: Stack) -> None:
    assert mint(stack.urls["web"], stack.token("door-in", SCOPES)).status_code == 200


@pytest.mark.parametrize("route", ["client_secrets", "calls", "calls-list", "openapi"])
def test_a_request_that_skips_the_distribution_is_403_and_spends_nothing(
    stack: Stack, route: str
) -> None:
    token = stack.token("door-skipper", SCOPES)
    mint(stack.urls["web"], stack.token("door-warm", SCOPES))  # the door's secret is read
    before = spent(stack)
    auth = {"Authorization": f"Bearer {token}"}
    api = stack.urls["api"]
    if route == "client_secrets":
        response = mint(api, token)
    elif route == "calls":
        response = httpx.post(
            api + "/v1/realtime/calls",
            content=OFFER_SDP,
            headers=auth | {"Content-Type": "application/sdp"},
            timeout=15,
        )
    elif route == "calls-list":
        response = httpx.get(api + "/v1/realtime/calls", headers=auth, timeout=15)
    else:
        response = httpx.get(api + "/openapi.json", timeout=15)

    assert_direct_access(response)
    assert spent(stack) == before


def test_a_guessed_or_stolen_header_opens_nothing_but_the_real_one(stack: Stack) -> None:
    """Only someone holding the secret gets through the back door; a viewer's own header
    through the distribution is replaced by the distribution's, as CloudFront does."""
    token = stack.token("door-guesser", SCOPES)
    before = spent(stack)
    assert_direct_access(mint(stack.urls["api"], token, **{"X-Origin-Verify": "x" * 64}))
    assert spent(stack) == before

    through = mint(stack.urls["web"], token, **{"X-Origin-Verify": "x" * 64})
    assert through.status_code == 200  # the viewer's value never reached the API
    assert (
        mint(stack.urls["api"], token, **{"X-Origin-Verify": door_value(stack)}).status_code == 200
    )
