"""The events/ files (for `sam local invoke`) replayed through the real handler."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from devstack.lambda_events import LambdaContext
from tests.conftest import BASE_ENV, ORIGIN
from tests.fakes import Issuer

EVENTS = Path(__file__).resolve().parents[2] / "events"
PLACEHOLDER = "REPLACE_WITH_A_TOKEN_FROM_make_token"


def load(name: str, token: str | None = None) -> dict[str, Any]:
    text = (EVENTS / name).read_text()
    if token:
        assert PLACEHOLDER in text
        text = text.replace(PLACEHOLDER, token)
    return json.loads(text)


@pytest.fixture
def lambda_handler(monkeypatch: pytest.MonkeyPatch, aws: Any) -> Any:
    """`app.handler` exactly as Lambda loads it: environment set, module imported afresh."""
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    return importlib.reload(importlib.import_module("token_vendor.app")).handler


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


def test_the_sam_local_env_file_points_at_the_local_stack() -> None:
    from token_vendor.config import Settings

    from devstack import stack

    env = json.loads((EVENTS / "env.json").read_text())["TokenFunction"]

    settings = Settings.from_env(env)
    assert settings.quota_table == stack.TABLE and settings.openai_secret_id == stack.SECRET_ID
    assert settings.auth_audiences == (stack.AUDIENCE,)
    ports = stack.DEFAULT_PORTS
    assert env["AWS_ENDPOINT_URL"].endswith(f":{ports['aws']}")
    assert settings.auth_issuer.endswith(f":{ports['issuer']}")
    assert settings.openai_base_url.endswith(f":{ports['openai']}/v1")
