"""What one request may cost the service, measured through the real handler: its answer, its
log lines, its CPU and the quota it spent, and whether either text holds a character that is
not plainly visible (a control, a bidi override, a zero-width space...).

A refused request spends no quota, so whatever it makes the function do or write is free for
its sender: the batteries send hostile input through every route and parser and hold each
answer to these bounds.

The work of a refusal is measured as CPU time of the calling thread (`time.thread_time`),
with the garbage collector held off for the request, against a bound about a hundred times
what a refusal takes: a count of Python calls would miss work done inside C (a regular
expression's backtracking, a byte scan), and CPU time, unlike wall time, does not grow while
the thread waits for a core on a busy machine. The bound is there to catch work that grows
faster than the input (a recursion, a walk over every part), tens or hundreds of times over
it. A success is not held to it: most of its CPU is moto's, in this thread (its transactions
copy the whole table, which grows with every call placed), and it is paid for with quota.
"""

from __future__ import annotations

import gc
import json
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.support.aws import Aws
from tests.support.handler import Reply, invoke
from tests.support.logs import LogCapture

MAX_ANSWER_BYTES = 2048  # a problem document quoting a name cut short; an SDP answer
MAX_LOG_BYTES = 4096  # the log lines of one request
MAX_CPU_SECONDS = 0.25  # a refusal takes a few milliseconds


WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}
# The items of the list's and the hangup's own per-user windows (api/quota.py, RouteQuotas):
# every list and every hangup counts against them, answered or refused.
ROUTE_LIMITS = "limit#"


@dataclass(frozen=True)
class Measured:
    reply: Reply
    log: str  # what the request logged
    cpu: float  # seconds of the calling thread's CPU
    writes: list[str]  # the DynamoDB writes the function made: "Operation pk", one per item
    quota_before: list[dict[str, Any]] | None = None  # the table, when it was compared
    quota_after: list[dict[str, Any]] | None = None


def measure(
    handler: Callable[..., Any],
    event: dict[str, Any],
    aws: Aws,
    logs: LogCapture,
    *,
    compare_table: bool = True,
) -> Measured:
    """One request through the handler, measured. The function's DynamoDB client is the
    test's (`aws.dynamodb`): every write it makes is seen. `compare_table`: the whole table
    is also read before and after (a scan that grows with every call placed)."""
    before = aws.quota_items() if compare_table else None
    logged, writes = len(logs.text), list[str]()

    def seen(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in WRITES:
            writes.extend(f"{model.name} {key}" for key in _written(model.name, params))

    events = aws.dynamodb.meta.events
    events.register("before-parameter-build.dynamodb", seen)
    gc.disable()  # a collection of the test process's heap is not the request's work
    try:
        started = time.thread_time()
        reply = invoke(handler, event)
        cpu = time.thread_time() - started
    finally:
        gc.enable()
        events.unregister("before-parameter-build.dynamodb", seen)
    after = aws.quota_items() if compare_table else None
    return Measured(reply, logs.text[logged:], cpu, writes, before, after)


def _written(operation: str, params: dict[str, Any]) -> list[str]:
    """The partition keys of the items a write touches."""
    if operation == "TransactWriteItems":
        actions = [next(iter(a.values())) for a in params.get("TransactItems", [])]
    elif operation == "BatchWriteItem":
        requests = [r for rs in params.get("RequestItems", {}).values() for r in rs]
        actions = [next(iter(r.values())) for r in requests]
    else:
        actions = [params]
    return [str((a.get("Key") or a.get("Item") or {}).get("pk", {}).get("S")) for a in actions]


def _spent(items: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The table but the routes' own windows."""
    if items is None:
        return None
    return [i for i in items if not i.get("pk", {}).get("S", "").startswith(ROUTE_LIMITS)]


def hidden(text: str) -> set[str]:
    """The characters of `text` that are not plainly visible: Unicode's Other (controls,
    format characters such as U+202E, surrogates, private use, unassigned) and Separator
    categories, the space excepted."""
    return {c for c in text if c != " " and unicodedata.category(c)[0] in "CZ"}


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def logged_strings(log: str) -> Iterator[str]:
    """Every string in the captured log lines (a line that is not JSON, whole). Split at
    newlines only: `splitlines` would also cut at U+2028 and hide the very character looked
    for."""
    for line in filter(None, log.split("\n")):
        try:
            record = json.loads(line)
        except ValueError:
            yield line
            continue
        yield from strings(record)


def assert_bounded(
    measured: Measured, *, spends: bool = False, misconfigured_ok: bool = False
) -> None:
    """The request was answered without a 500, within the bounds, with nothing hidden in
    what it answered or logged; a refusal spent nothing (`spends`: a success may;
    `misconfigured_ok`: the deploy under test cannot serve what a valid request asks, and
    says so with its 500 `misconfigured`)."""
    reply = measured.reply
    if misconfigured_ok and reply.status == 500:
        assert reply.json["type"].endswith(":misconfigured"), reply.body[:500]
    else:
        assert reply.status < 500, reply.body[:500]
    assert len(reply.body.encode()) <= MAX_ANSWER_BYTES, (reply.status, len(reply.body))
    assert len(measured.log.encode()) <= MAX_LOG_BYTES, measured.log[:1000]
    if reply.status >= 400:
        assert measured.cpu <= MAX_CPU_SECONDS, (reply.status, measured.cpu, reply.body[:300])
        assert reply.header("content-type") == "application/problem+json", reply.headers
        document = reply.json
        assert {"type", "title", "status", "detail", "error"} <= document.keys()
        assert document["status"] == reply.status
        found = set().union(*(hidden(s) for s in strings(document)))
        assert not found, (sorted(found), reply.body[:500])
    found = set().union(*(hidden(s) for s in logged_strings(measured.log)))
    assert not found, (sorted(found), measured.log[:1000])
    if reply.status >= 400 or not spends:
        # A list or a hangup counts against its route's own window even when refused; nothing
        # else may be written: the mint quota, the call ledger, the spend.
        spent = [w for w in measured.writes if not w.split(" ", 1)[1].startswith(ROUTE_LIMITS)]
        assert spent == [], f"a refused request wrote {spent}"
        before, after = _spent(measured.quota_before), _spent(measured.quota_after)
        assert after == before, "a refused request spent quota"
