"""The tests' in-process moto (tests/support/aws.py) answers one request at a time, as the
local stack's moto server does: the function's own threads may write the table at once (a
GPT-Live create charges its first 15 s while the ledger records the call), and moto's backends
hold no lock. Without it a TransactWriteItems, which copies the whole table to roll back,
raised "dictionary changed size during iteration" beside a PutItem (seen once in CI)."""

from __future__ import annotations

import threading
from typing import Any

from tests.support.aws import Aws
from tests.support.env import TABLE

SEEDED = 300  # a table big enough that copying it takes a while


def test_a_transaction_and_writes_from_other_threads_all_succeed(aws: Aws) -> None:
    for n in range(SEEDED):
        aws.dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": f"seed#{n}"}})
    errors: list[str] = []
    done = threading.Event()
    writes = 0

    def transactions() -> None:
        try:
            for n in range(20):
                aws.dynamodb.transact_write_items(TransactItems=[{"Update": update(f"tx#{n}")}])
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            done.set()

    def puts() -> None:
        nonlocal writes
        while not done.is_set():
            try:
                aws.dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": f"put#{writes}"}})
                writes += 1
            except Exception as exc:
                errors.append(repr(exc))
                return

    threads = [threading.Thread(target=transactions), threading.Thread(target=puts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert writes > 0  # the two threads really overlapped
    counted = aws.dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "tx#19"}})["Item"]
    assert counted["n"] == {"N": "1"}


def update(key: str) -> dict[str, Any]:
    return {
        "TableName": TABLE,
        "Key": {"pk": {"S": key}},
        "UpdateExpression": "ADD n :one",
        "ExpressionAttributeValues": {":one": {"N": "1"}},
    }
