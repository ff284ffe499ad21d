"""Fixtures: the function imported the way Lambda imports it, moto for AWS, a fake internet."""

from __future__ import annotations

import importlib
import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import pytest_socket
from moto import mock_aws

from devstack.lambda_events import LambdaContext, http_event
from tests.fakes import (
    AUDIENCE,
    ISSUER,
    JWKS_URL,
    OPENAI_BASE,
    OPENAI_KEY,
    FakeInternet,
    Issuer,
    use_fake_aws,
)

ROOT = Path(__file__).resolve().parents[1]
FUNCTION_DIR = ROOT / "functions"
sys.path.insert(0, str(FUNCTION_DIR))  # CodeUri on the path, as in Lambda

TABLE = "quota-table"
SCHEDULE_GROUP = "token-vendor-calls"
SECRET_ID = "openai-key"
ORIGIN = "https://app.example.com"
BASE_ENV = {
    "OPENAI_SECRET_ID": SECRET_ID,
    "OPENAI_BASE_URL": OPENAI_BASE,
    "QUOTA_TABLE": TABLE,
    "QUOTAS": "3/minute,10/day",
    "AUTH_ISSUER": ISSUER,
    "AUTH_AUDIENCE": AUDIENCE,
    "AUTH_JWKS_URL": JWKS_URL,
    "ALLOWED_ORIGINS": ORIGIN,
    "AWS_REGION": "us-east-1",
    "CALL_LIMITS": "concurrent=2,minutes/day=60",
    "SCHEDULE_GROUP": SCHEDULE_GROUP,
    "SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/token-vendor-scheduler",
}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def header(self, name: str) -> str | None:
        return {k.lower(): v for k, v in self.headers.items()}.get(name.lower())

    def required_header(self, name: str) -> str:
        """The header's value; a missing one fails the test here, naming the header."""
        value = self.header(name)
        assert value is not None, f"the reply has no {name} header"
        return value


def invoke(
    handler: Callable[..., dict[str, Any]],
    event: dict[str, Any],
    context: LambdaContext | None = None,
) -> Reply:
    result = handler(event, context or LambdaContext())
    return Reply(result["statusCode"], result.get("headers") or {}, result.get("body") or "")


@pytest.fixture
def app_module() -> Any:
    return importlib.import_module("token_vendor.app")


@dataclass
class Aws:
    dynamodb: Any
    secretsmanager: Any
    scheduler: Any

    def quota_items(self) -> list[dict[str, Any]]:
        return self.dynamodb.scan(TableName=TABLE)["Items"]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    use_fake_aws(monkeypatch)
    with mock_aws():
        session = botocore.session.get_session()
        dynamodb = session.create_client("dynamodb", region_name="us-east-1")
        from devstack.template import load_template, quota_table_definition

        definition = quota_table_definition(load_template(ROOT / "template.yaml"))
        ttl_attribute = definition.pop("ttl_attribute", None)
        dynamodb.create_table(TableName=TABLE, **definition)
        if ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=TABLE,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
            )
        secretsmanager = session.create_client("secretsmanager", region_name="us-east-1")
        secretsmanager.create_secret(Name=SECRET_ID, SecretString=OPENAI_KEY)
        scheduler = session.create_client("scheduler", region_name="us-east-1")
        scheduler.create_schedule_group(Name=SCHEDULE_GROUP)
        yield Aws(dynamodb, secretsmanager, scheduler)


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def internet(issuer: Issuer) -> FakeInternet:
    return FakeInternet(issuer)


@pytest.fixture
def make_handler(
    app_module: Any, aws: Aws, internet: FakeInternet
) -> Callable[..., Callable[..., dict[str, Any]]]:
    """A real handler (app.create_handler) wired to moto and the fake internet."""
    deps = importlib.import_module("token_vendor.deps")

    def make(**env: str) -> Callable[..., dict[str, Any]]:
        settings_env = BASE_ENV | env
        return app_module.create_handler(
            lambda: deps.build_container(
                settings_env,
                http=internet.client(),
                dynamodb=aws.dynamodb,
                secretsmanager=aws.secretsmanager,
                scheduler=aws.scheduler,
                log=app_module.logger,
            )
        )

    return make


@pytest.fixture
def handler(make_handler: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    return make_handler()


@pytest.fixture
def mint(handler: Callable[..., Any], issuer: Issuer) -> Callable[..., Reply]:
    """POST /v1/realtime/client_secrets with a valid token unless told otherwise."""

    def call(
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: str | None = None,
        context: LambdaContext | None = None,
    ) -> Reply:
        all_headers = {"authorization": f"Bearer {token or issuer.token()}", "origin": ORIGIN}
        if body is not None or raw is not None:
            all_headers["content-type"] = "application/json"
        all_headers.update(headers or {})
        all_headers = {k: v for k, v in all_headers.items() if v is not None}
        text = raw if raw is not None else (json.dumps(body) if body is not None else None)
        return invoke(handler, http_event(headers=all_headers, body=text), context)

    return call


class LogCapture:
    """Everything the function logs: Powertools' JSON lines and any library logger."""

    def __init__(self, app_module: Any) -> None:
        self._stream = io.StringIO()
        self._powertools = app_module.logger
        self._handler = self._powertools.registered_handler
        self._old_stream = self._handler.setStream(self._stream)
        self._old_level = self._powertools.log_level
        self._root = logging.StreamHandler(self._stream)
        self._root.setLevel(logging.DEBUG)
        logging.getLogger().addHandler(self._root)

    def debug(self) -> None:
        self._powertools.setLevel("DEBUG")
        logging.getLogger().setLevel(logging.DEBUG)

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def close(self) -> None:
        self._handler.setStream(self._old_stream)
        self._powertools.setLevel(self._old_level)
        logging.getLogger().removeHandler(self._root)
        logging.getLogger().setLevel(logging.WARNING)


@pytest.fixture
def logs(app_module: Any) -> Iterator[LogCapture]:
    capture = LogCapture(app_module)
    yield capture
    capture.close()


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest) -> Iterator[None]:
    """No test reaches a socket unless it says so: moto and MockTransport stand in for the
    world. Tests marked `stack` or `browser` use real loopback sockets."""
    if request.node.get_closest_marker("stack") or request.node.get_closest_marker("browser"):
        yield
        return
    pytest_socket.disable_socket(allow_unix_socket=True)
    yield
    pytest_socket.enable_socket()
