"""The events/ files (for `sam local invoke`) replayed through the real handler."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

from devstack.lambda_events import LambdaContext
from tests.support.aws import Aws
from tests.support.env import BASE_ENV, DOOR_PLACEHOLDER, EVENTS, ORIGIN, PLACEHOLDER
from tests.support.identity import Issuer


def load(name: str, token: str | None = None, door: str | None = None) -> dict[str, Any]:
    text = (EVENTS / name).read_text()
    if token:
        assert PLACEHOLDER in text
        text = text.replace(PLACEHOLDER, token)
    if door:
        assert DOOR_PLACEHOLDER in text
        text = text.replace(DOOR_PLACEHOLDER, door)
    return json.loads(text)


@pytest.fixture
def lambda_handler(monkeypatch: pytest.MonkeyPatch, aws: Any) -> Any:
    """`app.handler` exactly as Lambda loads it: environment set, module imported afresh."""
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    return importlib.reload(importlib.import_module("token_vendor.api.app")).handler


def test_the_mint_event_mints(handler: Any, issuer: Issuer) -> None:
    result = handler(load("mint.json", issuer.token()), LambdaContext())

    assert result["statusCode"] == 200 and json.loads(result["body"])["value"].startswith("ek_")
    assert result["headers"]["Access-Control-Allow-Origin"] == ORIGIN


def test_the_disallowed_field_event_is_refused_naming_the_field(
    handler: Any, issuer: Issuer
) -> None:
    result = handler(load("disallowed-field.json", issuer.token()), LambdaContext())

    assert result["statusCode"] == 400
    assert json.loads(result["body"])["field"] == "session.instructions"


def test_the_missing_token_event_is_401(lambda_handler: Any) -> None:
    result = lambda_handler(load("missing-token.json"), LambdaContext())

    assert result["statusCode"] == 401 and "WWW-Authenticate" in result["headers"]


def test_the_preflight_event_is_granted(lambda_handler: Any) -> None:
    result = lambda_handler(load("preflight.json"), LambdaContext())

    assert result["statusCode"] == 204
    assert result["headers"]["Access-Control-Allow-Origin"] == ORIGIN


def test_the_openapi_event_serves_the_document(lambda_handler: Any) -> None:
    result = lambda_handler(load("openapi.json"), LambdaContext())

    assert result["statusCode"] == 200 and json.loads(result["body"])["openapi"].startswith("3.1")


EXPECTED = {
    "mint.json": 200,
    "disallowed-field.json": 400,
    "missing-token.json": 401,
    "preflight.json": 204,
    "openapi.json": 200,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_event_is_what_the_distribution_forwards_and_opens_the_door(
    make_handler: Any, aws: Aws, issuer: Issuer, name: str
) -> None:
    """The events carry the header the page's distribution adds (a placeholder for its
    secret): with the door in force (ApiDoor=cloudfront) each gets its answer once the
    placeholder holds the secret, and a 403 while it does not."""
    secret = "d" * 64
    aws.secretsmanager.create_secret(Name="origin-verify", SecretString=secret)
    handler = make_handler(ORIGIN_SECRET_ID="origin-verify")
    token = issuer.token() if PLACEHOLDER in (EVENTS / name).read_text() else None

    opened = handler(load(name, token, door=secret), LambdaContext())
    skipped = handler(load(name, token), LambdaContext())

    assert opened["statusCode"] == EXPECTED[name], opened["body"]
    assert skipped["statusCode"] == 403
    assert json.loads(skipped["body"])["type"].endswith(":direct-access")


def test_the_sam_local_env_file_points_at_the_local_stack() -> None:
    from token_vendor.api.settings import ApiSettings

    from devstack import stack

    env = json.loads((EVENTS / "env.json").read_text())["TokenFunction"]

    settings = ApiSettings.from_env(env)
    assert settings.core.table == stack.TABLE and settings.core.openai_secret_id == stack.SECRET_ID
    assert settings.auth_audiences == (stack.AUDIENCE,)
    ports = stack.DEFAULT_PORTS
    assert env["AWS_ENDPOINT_URL"].endswith(f":{ports['aws']}")
    assert settings.auth_issuer.endswith(f":{ports['issuer']}")
    assert settings.core.openai_base_url.endswith(f":{ports['openai']}/v1")
    # `sam local` runs the API with no distribution in front: its own URL is the door.
    assert settings.origin_secret_id == ""
