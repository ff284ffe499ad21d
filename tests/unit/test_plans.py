"""Plans: a caller's plan from their verified token, for each identity provider's shape of
the claim (Cognito groups, Auth0 namespaced roles, Okta groups, a custom string claim, the
scopes), the plans file's checks, and an operator's override over a plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from token_vendor.api.auth import JwtVerifier
from token_vendor.api.jwks import JwksKeySource
from token_vendor.api.plans import DEFAULT, Plans, claim_values
from token_vendor.api.settings import ApiSettings
from token_vendor.core.controls import Controls, Override
from token_vendor.core.deadline import Deadline
from token_vendor.core.errors import ConfigError

from tests.support.env import BASE_ENV
from tests.support.identity import AUDIENCE, ISSUER, JWKS_URL, Issuer
from tests.support.internet import FakeInternet

PLANS = {
    "plans": {
        "pro": {
            "title": "Pro",
            "match": ["pro", "Pro-Users", "vendor:pro"],
            "quotas": "20/minute,500/day",
            "call_limits": "concurrent=3,minutes/day=240",
            "spend_limits": "usd/day=20.00",
        },
        "free": {
            "match": ["free"],
            "quotas": "2/minute,5/day",
            "call_limits": "concurrent=1,minutes/day=10",
            "spend_limits": "usd/day=0.50",
            "profiles": ["assistant"],
        },
    }
}


def plans(tmp_path: Path, claim: str, default: str = "free", **more: str) -> Plans:
    file = tmp_path / "plans.json"
    file.write_text(json.dumps(PLANS))
    env = BASE_ENV | {"PLANS_FILE": str(file), "PLAN_CLAIM": claim, "DEFAULT_PLAN": default}
    return ApiSettings.from_env(env | more).plan_book


def plan_of(tmp_path: Path, claim: str, **claims: Any) -> str:
    """The plan of a caller whose token, signed and verified, carries `claims`."""
    internet = FakeInternet(Issuer())
    keys = JwksKeySource(
        http=internet.client(), issuer=ISSUER, algorithms=("RS256",), jwks_url=JWKS_URL
    )
    verifier = JwtVerifier(issuer=ISSUER, audiences=(AUDIENCE,), algorithms=("RS256",), keys=keys)
    caller = verifier.verify(internet.issuer.token("alice", **claims), Deadline(5))
    return plans(tmp_path, claim).resolve(caller.claims).name


def test_cognito_groups_name_the_plan(tmp_path: Path) -> None:
    # A Cognito access token: its groups in `cognito:groups`, its scopes in `scope`.
    token = {"cognito:groups": ["Everyone", "Pro-Users"], "token_use": "access"}
    assert plan_of(tmp_path, "cognito:groups", **token) == "pro"
    assert plan_of(tmp_path, "cognito:groups", **{"cognito:groups": ["Everyone"]}) == "free"


def test_auth0_namespaced_roles_name_the_plan(tmp_path: Path) -> None:
    # Auth0 adds custom claims by an Action, under a namespace the operator owns.
    roles = "https://app.example.com/roles"
    assert plan_of(tmp_path, roles, **{roles: ["pro"], "permissions": ["realtime:mint"]}) == "pro"
    assert plan_of(tmp_path, roles, **{roles: []}) == "free"


def test_okta_groups_name_the_plan(tmp_path: Path) -> None:
    # Okta's custom authorization server: a `groups` claim and `scp` as a list.
    token = {"groups": ["Everyone", "pro"], "scp": ["openid", "realtime:mint"], "scope": ...}
    assert plan_of(tmp_path, "groups", **token) == "pro"


def test_a_string_claim_names_the_plan(tmp_path: Path) -> None:
    assert plan_of(tmp_path, "plan", plan="pro") == "pro"
    assert plan_of(tmp_path, "plan", plan="gold") == "free"  # no such plan: the default


def test_a_scope_names_the_plan(tmp_path: Path) -> None:
    assert plan_of(tmp_path, "scope", scope="openid vendor:pro") == "pro"
    assert plan_of(tmp_path, "scope", scope="openid realtime:mint") == "free"


def test_a_caller_without_the_claim_gets_the_default_plan(tmp_path: Path) -> None:
    assert plan_of(tmp_path, "cognito:groups") == "free"


def test_a_claim_of_the_wrong_type_says_nothing() -> None:
    assert claim_values({"groups": {"pro": True}}, "groups") == frozenset()
    assert claim_values({"groups": ["pro", 7, None]}, "groups") == {"pro"}
    assert claim_values({"plan": "pro free"}, "plan") == {"pro free"}  # one value, not a scope


def test_the_first_plan_in_the_file_wins(tmp_path: Path) -> None:
    book = plans(tmp_path, "groups")
    assert book.resolve({"groups": ["free", "pro"]}).name == "pro"


def test_a_plan_sets_its_limits_and_leaves_the_rest_to_the_deploy(tmp_path: Path) -> None:
    book = plans(tmp_path, "groups", SPEND_LIMITS="usd/day=2,global:usd/day=100")
    pro, free = book.by_name["pro"], book.by_name["free"]

    assert [(w.name, w.limit) for w in pro.quotas] == [("minute", 20), ("day", 500)]
    assert (pro.call_limits.concurrent, pro.call_limits.seconds_per_day) == (3, 240 * 60)
    assert pro.spend_limits.user_micros == 20_000_000
    assert pro.spend_limits.global_micros == 100_000_000  # the service's own, kept
    assert pro.allows("assistant-direct") and not free.allows("assistant-direct")


def test_without_a_plans_file_everyone_is_on_the_deploy_s_limits() -> None:
    book = ApiSettings.from_env(BASE_ENV).plan_book
    assert list(book.by_name) == [DEFAULT]
    assert book.resolve({"groups": ["pro"]}).quotas[0].limit == 3  # BASE_ENV's QUOTAS


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"quotas": "many/day"}, "quotas"),
        ({"profiles": ["nope"]}, "no profile named 'nope'"),
        ({"spend_limits": "global:usd/day=1"}, "only the per-user budget"),
        ({"colour": "gold"}, "unknown field 'colour'"),
        ({"match": "pro"}, "'match' must be a list"),
    ],
)
def test_a_bad_plan_fails_the_cold_start_naming_it(
    tmp_path: Path, change: dict[str, Any], problem: str
) -> None:
    file = tmp_path / "plans.json"
    file.write_text(json.dumps({"plans": {"pro": PLANS["plans"]["pro"] | change}}))
    env = BASE_ENV | {"PLANS_FILE": str(file), "PLAN_CLAIM": "groups", "DEFAULT_PLAN": "pro"}
    with pytest.raises(ConfigError) as raised:
        ApiSettings.from_env(env)
    assert problem in str(raised.value) and "plan 'pro'" in str(raised.value)


def test_a_missing_default_plan_or_claim_fails_the_cold_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DEFAULT_PLAN"):
        plans(tmp_path, "groups", default="gold")
    with pytest.raises(ConfigError, match="PLAN_CLAIM is required"):
        plans(tmp_path, "")


def test_the_shipped_plans_file_loads() -> None:
    env = BASE_ENV | {"PLANS_FILE": "plans.json", "PLAN_CLAIM": "cognito:groups"}
    book = ApiSettings.from_env(env | {"DEFAULT_PLAN": "free"}).plan_book
    assert list(book.by_name) == ["pro", "free"]


def test_an_override_replaces_one_limit_until_it_expires(tmp_path: Path) -> None:
    free = plans(tmp_path, "groups").by_name["free"]
    controls = Controls(
        overrides={
            "call_limits": Override("concurrent=2,minutes/day=90", until=2_000),
            "spend_limits": Override("usd/day=5", until=1_000),
            "quotas": Override("50/day", until=2_000),
        }
    )

    before = free.with_controls(controls, now=999)
    after = free.with_controls(controls, now=1_000)

    assert before.call_limits.seconds_per_day == 90 * 60 and before.call_limits.concurrent == 2
    assert before.spend_limits.user_micros == 5_000_000
    assert [(w.name, w.limit) for w in before.quotas] == [("day", 50)]
    assert after.spend_limits.user_micros == 500_000  # the spend override expired at 1000
    assert after.call_limits.seconds_per_day == 90 * 60


def test_a_malformed_override_is_ignored_not_fatal(tmp_path: Path) -> None:
    free = plans(tmp_path, "groups").by_name["free"]
    controls = Controls(overrides={"quotas": Override("lots", until=2_000)})
    assert free.with_controls(controls, now=1).quotas == free.quotas
