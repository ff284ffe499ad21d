"""The call ledger under concurrency, as many Lambda environments are many processes.

One DynamoDB (and Scheduler) stand-in serving one request at a time; eight worker processes,
each running the real handler (botocore to the stand-in, a fake OpenAI per process), place
40 simultaneous calls for one user every round:
- with `concurrent=3`: exactly 3 calls placed, 3 upstream calls, 3 schedules, 37 refusals
  naming the limit, and the day's counter exactly the 3 reservations;
- with a budget that covers exactly 3 of the profile's calls: exactly 3 placed, the rest
  refused for minutes, the counter exactly the 3 reservations, never over the budget;
- then every call's scheduled hangup delivered four times at once from different processes:
  exactly one delivery settles each call, and the counter keeps only the seconds used.
"""

from __future__ import annotations

import functools
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.aws import aws_client
from tests.support.env import BASE_ENV, SCHEDULE_GROUP, TABLE
from tests.support.identity import Issuer
from tests.support.internet import OFFER_SDP
from tests.support.workers import function_in_worker

pytestmark = pytest.mark.stack

WORKERS = 8
REQUESTS = 40
ROUNDS = 5
CONCURRENT = 3
DAY = 86400

_handlers: dict[str, Any] = {}


def _init_worker(env: dict[str, str], jwks: dict[str, Any]) -> None:
    import secrets

    import httpx

    from tests.support.internet import ANSWER_SDP

    def openai(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/hangup"):
            return httpx.Response(200, json={})
        call_id = "rtc_" + secrets.token_hex(12)
        return httpx.Response(
            201, content=ANSWER_SDP.encode(), headers={"location": f"/v1/realtime/calls/{call_id}"}
        )

    app, deps, http = function_in_worker(env, jwks, openai)
    for limits in (f"concurrent={CONCURRENT},minutes/day=600", "concurrent=10,minutes/day=30"):
        _handlers[limits] = app.create_handler(
            functools.partial(deps.build_container, env | {"CALL_LIMITS": limits}, http=http)
        )


def _place(token: str, limits: str, count: int, start_at: float) -> list[dict[str, Any]]:
    from devstack.lambda_events import LambdaContext, http_event

    event = http_event(
        "POST",
        "/v1/realtime/calls",
        headers={"authorization": f"Bearer {token}", "content-type": "application/sdp"},
        body=OFFER_SDP,
    )
    time.sleep(max(start_at - time.time(), 0))  # a barrier across processes
    out = []
    for _ in range(count):
        # Forty requests queue at a stand-in that serves one at a time: on a loaded machine
        # the last waits longer than a default invocation's 10 s, and its deadline (a correct
        # 504) is not what this battery tests. API Gateway's own limit is 30 s.
        result = _handlers[limits](event, LambdaContext(remaining_ms=29_000))
        headers = result["headers"]
        out.append(
            {
                "status": result["statusCode"],
                "location": headers.get("Location"),
                "ends_at": headers.get("Call-Ends-At"),
                "body": result["body"] if result["statusCode"] != 201 else "",
            }
        )
    return out


def _fire(event: dict[str, Any], limits: str, start_at: float) -> str:
    from devstack.lambda_events import LambdaContext

    time.sleep(max(start_at - time.time(), 0))
    return str(_handlers[limits](event, LambdaContext(remaining_ms=29_000))["status"])


@pytest.fixture(scope="module")
def aws(dynamodb_url: str) -> dict[str, Any]:
    scheduler = aws_client(dynamodb_url, service="scheduler")
    scheduler.create_schedule_group(Name=SCHEDULE_GROUP)
    return {"dynamodb": aws_client(dynamodb_url), "scheduler": scheduler}


@pytest.fixture(scope="module")
def pool(dynamodb_url: str, aws: Any) -> Iterator[Any]:
    issuer = Issuer()
    env = BASE_ENV | {
        "AWS_ENDPOINT_URL": dynamodb_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "QUOTAS": "10000/minute",
    }
    context = multiprocessing.get_context("spawn")
    with context.Pool(WORKERS, initializer=_init_worker, initargs=(env, issuer.jwks())) as workers:
        workers.issuer = issuer  # type: ignore[attr-defined]
        yield workers


def place_all(pool: Any, user: str, limits: str) -> list[dict[str, Any]]:
    token = pool.issuer.token(user)
    start_at = time.time() + 0.5
    per = REQUESTS // WORKERS
    chunks = pool.starmap(_place, [(token, limits, per, start_at)] * WORKERS)
    return [r for chunk in chunks for r in chunk]


def ledger_item(aws: dict[str, Any], user_hash: str) -> dict[str, Any]:
    return dict(
        aws["dynamodb"].get_item(
            TableName=TABLE, Key={"pk": {"S": f"calls#{user_hash}"}}, ConsistentRead=True
        )["Item"]
    )


def reserved(item: dict[str, Any], slots: int) -> int:
    return sum(
        int(item[f"s{i}_end"]["N"]) - int(item[f"s{i}_start"]["N"])
        for i in range(slots)
        if f"s{i}_ref" in item
    )


def user_hash(pool: Any, user: str) -> str:
    from token_vendor.api.auth import Caller

    return Caller(pool.issuer.issuer, user, frozenset(), None).user_hash


def schedules_of(aws: dict[str, Any], call_ids: set[str]) -> list[dict[str, Any]]:
    listed = aws["scheduler"].list_schedules(GroupName=SCHEDULE_GROUP, MaxResults=100)
    return [
        aws["scheduler"].get_schedule(Name=s["Name"], GroupName=SCHEDULE_GROUP)
        for s in listed["Schedules"]
        if s["Name"].removeprefix("call-") in call_ids
    ]


def test_forty_simultaneous_calls_for_one_user_place_exactly_the_concurrent_limit(
    pool: Any, aws: dict[str, Any]
) -> None:
    limits = f"concurrent={CONCURRENT},minutes/day=600"
    for round_ in range(ROUNDS):
        user = f"caller-{round_}-{time.time_ns()}"
        results = place_all(pool, user, limits)

        statuses = Counter(r["status"] for r in results)
        assert statuses == {201: CONCURRENT, 429: REQUESTS - CONCURRENT}, (round_, statuses)
        refusals = [r["body"] for r in results if r["status"] == 429]
        assert all('"policy":"concurrent"' in body for body in refusals)
        placed = {r["location"].rsplit("/", 1)[-1] for r in results if r["status"] == 201}
        assert len(placed) == CONCURRENT
        assert len(schedules_of(aws, placed)) == CONCURRENT  # each call has its end
        item = ledger_item(aws, user_hash(pool, user))
        day = int(time.time()) // DAY
        assert int(item[f"m_{day}"]["N"]) == reserved(item, CONCURRENT)  # exactly the three
        assert {item[f"s{i}_call"]["S"] for i in range(CONCURRENT)} == placed


def test_a_budget_for_exactly_three_calls_places_exactly_three_and_settles_each_once(
    pool: Any, aws: dict[str, Any]
) -> None:
    limits = "concurrent=10,minutes/day=30"  # 1800 s: three calls of at most 600 s
    for round_ in range(ROUNDS):
        user = f"budget-{round_}-{time.time_ns()}"
        results = place_all(pool, user, limits)

        statuses = Counter(r["status"] for r in results)
        assert statuses == {201: 3, 429: REQUESTS - 3}, (round_, statuses)
        assert all('"policy":"minutes"' in r["body"] for r in results if r["status"] == 429)
        hashed = user_hash(pool, user)
        item = ledger_item(aws, hashed)
        day = int(time.time()) // DAY
        used = int(item[f"m_{day}"]["N"])
        assert used == reserved(item, 10) <= 1800

        # Every deadline delivered four times at once, from different processes.
        placed = [r["location"].rsplit("/", 1)[-1] for r in results if r["status"] == 201]
        events = [{"action": "hangup", "call_id": c, "user": hashed} for c in placed]
        start_at = time.time() + 0.3
        outcomes = pool.starmap(_fire, [(e, limits, start_at) for e in events for _ in range(4)])

        assert Counter(outcomes) == {"settled": 3, "already-ended": 9}, outcomes
        item = ledger_item(aws, hashed)
        lasted = sum(
            int(item[f"s{i}_end"]["N"]) - int(item[f"s{i}_start"]["N"])
            for i in range(10)
            if f"s{i}_done" in item
        )
        # Each call keeps only what it lasted (a second or two here, counted up to the next
        # whole second); a second settlement would have taken ~600 s more off.
        assert lasted <= int(item[f"m_{day}"]["N"]) <= lasted + 3 * 2
