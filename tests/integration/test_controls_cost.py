"""What checking the operator's controls (USER_CONTROLS=on) costs a warm request, measured
through the real handler against moto: with a spend budget set (the template's default) the
control item is one more key of the spend read's BatchGetItem, so every warm mint and call
setup sends exactly the requests it sends with controls off; without a budget, one GetItem
more, sent beside the first write (no step of wall time more). And what a control changes:
a blocked user's mint and call are refused with 403 `user-blocked` with nothing kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from token_vendor.core.controls import ControlWriter

from devstack.lambda_events import http_event
from tests.support.aws import Aws
from tests.support.env import ORIGIN, TABLE
from tests.support.handler import Reply, assert_problem, counters, invoke
from tests.support.identity import Issuer
from tests.support.internet import OFFER_SDP

BUDGET = {"SPEND_LIMITS": "usd/day=2.00"}


def requests_of(aws: Aws) -> list[str]:
    """The DynamoDB operations sent from now on, in order."""
    sent: list[str] = []
    aws.dynamodb.meta.events.register(
        "before-call.dynamodb", lambda model, **_: sent.append(model.name)
    )
    return sent


def mint_with(handler: Any, issuer: Issuer, user: str = "user-1") -> Reply:
    headers = {"authorization": f"Bearer {issuer.token(user)}", "origin": ORIGIN}
    return invoke(handler, http_event(headers=headers))


def call_with(handler: Any, issuer: Issuer, user: str = "user-1") -> Reply:
    headers = {
        "authorization": f"Bearer {issuer.token(user)}",
        "origin": ORIGIN,
        "content-type": "application/sdp",
    }
    return invoke(
        handler, http_event("POST", "/v1/realtime/calls", headers=headers, body=OFFER_SDP)
    )


def warm(
    send: Callable[[Any, Issuer, str], Reply], handler: Any, issuer: Issuer, aws: Aws, user: str
) -> list[str]:
    """The warm request's DynamoDB operations (a cold one first, for another user)."""
    assert send(handler, issuer, f"{user}-cold").status in (200, 201)
    sent = requests_of(aws)
    assert send(handler, issuer, user).status in (200, 201)
    return sorted(sent)


@pytest.mark.parametrize("send", [mint_with, call_with], ids=["mint", "call"])
def test_with_a_budget_set_controls_add_no_request(
    make_handler: Any, issuer: Issuer, aws: Aws, send: Any
) -> None:
    off = warm(send, make_handler(**BUDGET, USER_CONTROLS="off"), issuer, aws, "off")
    on = warm(send, make_handler(**BUDGET, USER_CONTROLS="on"), issuer, aws, "on")

    print(f"{send.__name__}: controls off {off}, on {on}")
    assert on == off
    assert on.count("BatchGetItem") == 1  # the spend and the controls, one request


@pytest.mark.parametrize("send", [mint_with, call_with], ids=["mint", "call"])
def test_without_a_budget_controls_add_one_read(
    make_handler: Any, issuer: Issuer, aws: Aws, send: Any
) -> None:
    off = warm(send, make_handler(USER_CONTROLS="off"), issuer, aws, "off")
    on = warm(send, make_handler(USER_CONTROLS="on"), issuer, aws, "on")

    print(f"{send.__name__}: controls off {off}, on {on}")
    assert sorted([*off, "GetItem"]) == on


@pytest.mark.parametrize("env", [BUDGET, {}], ids=["budget", "no-budget"])
def test_a_blocked_user_is_refused_and_keeps_nothing(
    make_handler: Any, issuer: Issuer, aws: Aws, env: dict[str, str]
) -> None:
    from token_vendor.api.auth import Caller

    from tests.support.identity import ISSUER

    handler = make_handler(**env, USER_CONTROLS="on")
    user = Caller(issuer=ISSUER, subject="mallory", scopes=frozenset(), kid=None).user_hash
    ControlWriter(TABLE, aws.dynamodb).block(user, "abuse")

    minted, placed = mint_with(handler, issuer, "mallory"), call_with(handler, issuer, "mallory")

    for reply in (minted, placed):
        body = assert_problem(reply, 403, "user-blocked")
        assert "abuse" not in reply.body and body["error"]["type"] == "permission_error"
    assert counters(aws) == 0  # both mint units given back
    calls = aws.dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": f"calls#{user}"}})
    item = calls.get("Item", {})
    assert not any(k.startswith("n_") and v["N"] != "0" for k, v in item.items())
    ControlWriter(TABLE, aws.dynamodb).unblock(user)
    assert mint_with(handler, issuer, "mallory").status == 200
