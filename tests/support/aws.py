"""AWS for the tests: moto in-process (DynamoDB with the template's quota table, Secrets
Manager with the OpenAI key, Scheduler with the calls' group), or real clients for a loopback
server; never a real endpoint, profile or credential."""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import botocore.loaders
import botocore.session
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from devstack.aws import FAKE_CREDENTIALS
from tests.support.env import ROOT, SCHEDULE_GROUP, SECRET_ID, TABLE
from tests.support.internet import OPENAI_KEY


def use_fake_aws(monkeypatch: Any) -> None:
    """Fake credentials and a region for moto; no real endpoint or profile can leak in."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def aws_client(endpoint_url: str, config: Any = None, service: str = "dynamodb") -> Any:
    """A real botocore client for a loopback server (moto's, or a faulty DynamoDB)."""
    return botocore_session().create_client(
        service,
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


class RawBody:
    """A raw HTTP body for a botocore AWSResponse a test answers with (before-send)."""

    def __init__(self, body: bytes = b"{}") -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


@dataclass
class Aws:
    dynamodb: Any
    secretsmanager: Any
    scheduler: Any

    def quota_items(self) -> list[dict[str, Any]]:
        return self.dynamodb.scan(TableName=TABLE)["Items"]


# botocore's reader of its service models (JSON files it parses once, then keeps): one for
# the run, so each test's fresh session does not parse DynamoDB's model again.
_MODELS = botocore.loaders.create_loader()


def botocore_session() -> botocore.session.Session:
    """A fresh botocore session (its own credentials, config and events) reading the service
    models through the run's one loader."""
    session = botocore.session.get_session()
    session.register_component("data_loader", _MODELS)
    return session


@functools.cache
def _quota_table() -> dict[str, Any]:
    from devstack.template import load_template, quota_table_definition

    # template.yaml does not change during a run; parsing it (pure-Python YAML) took 0.3 s.
    return quota_table_definition(load_template(ROOT / "template.yaml"))


def quota_table_definition() -> dict[str, Any]:
    """The quota table as template.yaml defines it (a copy: the caller may change it)."""
    return copy.deepcopy(_quota_table())


# moto answers an in-process request on the caller's thread and its backends hold no lock, so
# the function's own threads (a GPT-Live create charges its first 15 s while the ledger records
# the call) can meet inside moto: a TransactWriteItems deep-copies the table while another
# thread adds an item, and raises "dictionary changed size during iteration". AWS serialises
# writes to an item; here every request is handled whole before the next, as the local stack's
# moto server (devstack/moto_server.py) does.
_ONE_REQUEST_AT_A_TIME = threading.RLock()
_process_request = BotocoreStubber.process_request


def _one_at_a_time(self: BotocoreStubber, request: Any) -> Any:
    with _ONE_REQUEST_AT_A_TIME:
        return _process_request(self, request)


@contextmanager
def in_process_aws() -> Iterator[None]:
    """moto's `mock_aws`, answering one request at a time. Tests use this, never `mock_aws`
    itself (tests/unit/test_test_layout.py)."""
    with mock_aws(), mock.patch.object(BotocoreStubber, "process_request", _one_at_a_time):
        yield


@contextmanager
def moto_aws() -> Iterator[Aws]:
    """moto's AWS, fresh, with what the template creates: the quota table (its definition read
    from template.yaml, TTL included), the OpenAI key's secret and the calls' schedule group.
    Call use_fake_aws first."""
    with in_process_aws():
        session = botocore_session()
        dynamodb = session.create_client("dynamodb", region_name="us-east-1")
        definition = quota_table_definition()
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


def count_aws_calls(aws: Aws) -> dict[str, int]:
    """Counts the requests each client sends from now on (the dict fills as they go)."""
    calls = {"dynamodb": 0, "secretsmanager": 0}
    aws.dynamodb.meta.events.register(
        "request-created", lambda **kw: calls.__setitem__("dynamodb", calls["dynamodb"] + 1)
    )
    aws.secretsmanager.meta.events.register(
        "request-created",
        lambda **kw: calls.__setitem__("secretsmanager", calls["secretsmanager"] + 1),
    )
    return calls
