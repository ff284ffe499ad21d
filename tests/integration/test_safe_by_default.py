"""Safe by default, through the real handler (moto, the fake internet): the shipped profiles
serve server-owned calls; client secrets come from a profile the operator opts into (a scope);
and a budget that cannot pay for one more response refuses a mint exactly as it refuses a
call, so a user whose budget is spent obtains neither."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack.lambda_events import http_event
from tests.support.aws import Aws
from tests.support.env import ORIGIN
from tests.support.handler import invoke, mint_units, spend
from tests.support.identity import Issuer
from tests.support.internet import FakeInternet
from tests.support.logs import LogCapture

LIMITS = "usd/day=1.00,global:usd/day=5.00"
# One response like the shipped `assistant` profiles' dearest: 1,024 output tokens at
# gpt-realtime-2.1's audio output price, 64 USD per million.
ASSISTANT_FLOOR = 1024 * 64


def mint_as(handler: Any, token: str, body: dict[str, Any] | None = None) -> Any:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    return invoke(
        handler, http_event(headers=headers | {"origin": ORIGIN}, body=json.dumps(body or {}))
    )


def test_the_shipped_default_serves_calls_and_keeps_client_secrets_behind_a_scope(
    handler: Any, place: Any, issuer: Issuer, internet: FakeInternet
) -> None:
    ordinary = issuer.token(scope="openid")

    refused = mint_as(handler, ordinary)
    opted_in = mint_as(handler, issuer.token(scope="openid realtime:client_secrets"))

    assert refused.status == 403 and refused.json["type"].endswith("insufficient-scope")
    assert "assistant-direct" in refused.json["detail"]
    assert opted_in.status == 200 and opted_in.json["value"].startswith("ek_")
    assert place().status == 201  # the calls route's default needs no scope


@pytest.mark.parametrize(
    ("charged", "policy"),
    [
        ({"user-1": 1_000_000}, "spend-user"),
        ({f"u{n}": 1_000_000 for n in range(5)}, "spend-global"),
    ],
)
def test_a_spent_budget_refuses_a_client_secret_as_it_refuses_a_call(
    make_handler: Any,
    issuer: Issuer,
    aws: Aws,
    internet: FakeInternet,
    charged: dict[str, int],
    policy: str,
) -> None:
    handler = make_handler(SPEND_LIMITS=LIMITS)
    for user, micros in charged.items():
        spend(aws, user, micros, LIMITS)
    units = mint_units(aws)

    refused = mint_as(handler, issuer.token())

    assert refused.status == 429 and refused.json["type"].endswith("spend-limit")
    assert refused.json["policy"] == policy
    assert 0 < int(refused.required_header("retry-after")) <= 86400
    assert mint_units(aws) == units  # the quota's unit came back
    assert internet.minted == []  # nothing was asked of OpenAI


@pytest.mark.parametrize("route", ["mint", "call"])
def test_a_budget_with_less_than_one_response_left_refuses_both_routes(
    make_handler: Any, place: Any, issuer: Issuer, aws: Aws, internet: FakeInternet, route: str
) -> None:
    """Not only at zero: 1.00 USD less what one response like the profile's dearest costs,
    plus one micro-dollar, is too little; a micro-dollar less spent is enough."""
    handler = make_handler(SPEND_LIMITS=LIMITS)
    spend(aws, "user-1", 1_000_000 - ASSISTANT_FLOOR + 1, LIMITS)
    spend(aws, "user-2", 1_000_000 - ASSISTANT_FLOOR, LIMITS)

    def ask(user: str) -> Any:
        if route == "call":
            return place(user=user, with_handler=handler)
        return mint_as(handler, issuer.token(user))

    refused, admitted = ask("user-1"), ask("user-2")

    assert refused.status == 429 and refused.json["policy"] == "spend-user"
    assert admitted.status in (200, 201)


def test_a_configured_floor_replaces_the_profiles_own(
    make_handler: Any, place: Any, aws: Aws
) -> None:
    handler = make_handler(SPEND_LIMITS=LIMITS + ",floor:usd=0.50")
    spend(aws, "user-1", 500_001, LIMITS)  # 0.499999 left: under the floor

    assert place(with_handler=handler).json["policy"] == "spend-user"
    assert place(user="user-2", with_handler=handler).status == 201


def test_a_budget_beside_a_client_secret_profile_anyone_can_use_is_a_cold_start_warning(
    make_handler: Any, issuer: Issuer, tmp_path: Any, app_module: Any
) -> None:
    profiles = {
        "default_profile": "open",
        "profiles": {
            "open": {"models": ["gpt-realtime-2.1"], "instructions": "x",
                     "flows": ["calls", "client_secrets"]},
            "gated": {"models": ["gpt-realtime-2.1"], "instructions": "x",
                      "flows": ["client_secrets"], "required_scopes": ["realtime:client_secrets"]},
        },
    }  # fmt: skip
    (tmp_path / "profiles.json").write_text(json.dumps(profiles))
    logs = LogCapture(app_module)
    try:
        handler = make_handler(PROFILES_FILE=str(tmp_path / "profiles.json"), SPEND_LIMITS=LIMITS)
        mint_as(handler, issuer.token())
        quiet = make_handler(PROFILES_FILE=str(tmp_path / "profiles.json"))
        mint_as(quiet, issuer.token())
    finally:
        logs.close()

    warnings = [r for r in logs.records() if r.get("level") == "WARNING"]
    assert [w["message"] for w in warnings if "serves client secrets" in w["message"]] == [
        "profile 'open' serves client secrets to callers without a required scope: "
        "SPEND_LIMITS does not bound them (a secret's sessions are not metered; only QUOTAS "
        "bounds how many a user mints)"
    ]  # once, for the budgeted stack; none for 'gated', none without a budget
