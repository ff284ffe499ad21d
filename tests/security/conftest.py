"""The security batteries' stand-ins: a DynamoDB (and Scheduler) serving one request at a time,
for the concurrency batteries; a DynamoDB that answers per a script, for the faults."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from devstack.net import free_port
from tests.support.aws import aws_client, quota_table_definition
from tests.support.env import ROOT, SECRET_ID, TABLE
from tests.support.faults import FaultyDynamoDB
from tests.support.internet import OPENAI_KEY


# Module scope: each battery module gets a fresh one (its table, its secret).
@pytest.fixture(scope="module")
def dynamodb_url() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.serial_dynamodb", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout and process.stdout.readline().strip() == "ready"
        url = f"http://127.0.0.1:{port}"
        definition = quota_table_definition()
        definition.pop("ttl_attribute", None)
        aws_client(url).create_table(TableName=TABLE, **definition)
        aws_client(url, service="secretsmanager").create_secret(
            Name=SECRET_ID, SecretString=OPENAI_KEY
        )
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def faulty_dynamodb() -> Iterator[type[FaultyDynamoDB]]:
    FaultyDynamoDB.script, FaultyDynamoDB.attempts = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FaultyDynamoDB)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FaultyDynamoDB.url = f"http://127.0.0.1:{server.server_port}"  # type: ignore[attr-defined]
    yield FaultyDynamoDB
    server.shutdown()
