"""Plans and quota overrides through the real handler against moto: a plan's mint quota and
profiles, and an operator's override of the quota both ways (more than the plan gives, and
less), each unit counted exactly once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from token_vendor.core.controls import ControlWriter

from devstack.lambda_events import http_event
from tests.support.aws import Aws
from tests.support.env import ORIGIN, SECRETS_SCOPES, TABLE
from tests.support.handler import Reply, assert_problem, invoke, user_hash, window_units
from tests.support.identity import Issuer

# Every test here counts in one minute window of the real clock.
pytestmark = pytest.mark.usefixtures("one_minute")

PLANS = {
    "plans": {
        "pro": {"match": ["pro"], "quotas": "5/minute,50/day"},
        "free": {"quotas": "2/minute,20/day", "profiles": ["assistant"]},
    }
}


@pytest.fixture
def handler(make_handler: Any, tmp_path: Path) -> Any:
    plans = tmp_path / "plans.json"
    plans.write_text(json.dumps(PLANS))
    return make_handler(
        PLANS_FILE=str(plans),
        PLAN_CLAIM="groups",
        DEFAULT_PLAN="free",
        USER_CONTROLS="on",
        SPEND_LIMITS="usd/day=2.00",
    )


def mint(handler: Any, issuer: Issuer, user: str, groups: list[str]) -> Reply:
    token = issuer.token(user, scope=SECRETS_SCOPES, groups=groups)
    headers = {"authorization": f"Bearer {token}", "origin": ORIGIN}
    return invoke(handler, http_event(headers=headers))


def test_each_plan_mints_under_its_own_quota_and_profiles(
    handler: Any, issuer: Issuer, aws: Aws
) -> None:
    pro = mint(handler, issuer, "paula", ["pro"])
    free = mint(handler, issuer, "freda", [])

    assert pro.status == 200 and '"minute";q=5' in pro.required_header("ratelimit-policy")
    # The free plan leaves out the client-secret profile: refused before anything is counted.
    body = assert_problem(free, 403, "insufficient-scope")
    assert "Your plan 'free' does not include the profile 'assistant-direct'" in body["detail"]
    assert body["plan"] == "free" and free.header("WWW-Authenticate") is None
    assert window_units(aws, user_hash("freda"), "c_minute") == 0


def test_an_override_above_the_plan_admits_what_the_plan_refuses(
    handler: Any, issuer: Issuer, aws: Aws
) -> None:
    replies = [mint(handler, issuer, "olga", ["pro"]) for _ in range(5)]
    assert [r.status for r in replies] == [200] * 5
    assert mint(handler, issuer, "olga", ["pro"]).status == 429

    ControlWriter(TABLE, aws.dynamodb).set_override(
        user_hash("olga"), "quotas", "7/minute,70/day", int(time.time()) + 3600
    )
    more = [mint(handler, issuer, "olga", ["pro"]) for _ in range(3)]

    assert [r.status for r in more] == [200, 200, 429]
    assert '"minute";q=7' in more[0].required_header("ratelimit-policy")
    assert window_units(aws, user_hash("olga"), "c_minute") == 7  # each refusal counted nothing


def test_an_override_below_the_plan_refuses_what_the_plan_admits(
    handler: Any, issuer: Issuer, aws: Aws
) -> None:
    ControlWriter(TABLE, aws.dynamodb).set_override(
        user_hash("ursula"), "quotas", "1/minute,10/day", int(time.time()) + 3600
    )
    first, second = (
        mint(handler, issuer, "ursula", ["pro"]),
        mint(handler, issuer, "ursula", ["pro"]),
    )

    assert first.status == 200 and '"minute";q=1' in first.required_header("ratelimit-policy")
    assert_problem(second, 429, "quota-exceeded")
    # The plan's unit given back, the override's kept.
    assert window_units(aws, user_hash("ursula"), "c_minute") == 1


def test_a_calls_watcher_is_told_the_plans_budget_not_an_overrides(
    make_watched_handler: Any, place: Any, aws: Aws, tmp_path: Path
) -> None:
    """The watcher applies the operator's overrides itself at every poll; were it told the
    overridden budget at the start, an override that expires or is cleared would keep
    counting for the rest of the call (and across its hand-overs)."""
    from botocore.stub import Stubber

    from tests.support.handler import expect_watcher_start

    plans = tmp_path / "plans.json"
    plans.write_text(json.dumps({"plans": {"free": {"spend_limits": "usd/day=1.00"}}}))
    env = {
        "PLANS_FILE": str(plans),
        "PLAN_CLAIM": "groups",
        "DEFAULT_PLAN": "free",
        "USER_CONTROLS": "on",
        "SPEND_LIMITS": "usd/day=1.00",
    }
    ControlWriter(TABLE, aws.dynamodb).set_override(
        user_hash("user-1"), "spend_limits", "usd/day=20.00", int(time.time()) + 3600
    )
    handler, lambda_client = make_watched_handler(env)
    started: list[dict[str, Any]] = []
    lambda_client.meta.events.register(
        "before-parameter-build.lambda.Invoke",
        lambda params, **_: started.append(json.loads(params["Payload"])),
    )
    with Stubber(lambda_client) as stub:
        expect_watcher_start(stub)
        assert place(with_handler=handler).status == 201

    (start,) = [e for e in started if e.get("action") == "watch"]
    assert start["budget_micros"] == 1_000_000
