"""Battery 2: the quota under concurrency, as many Lambda environments are many processes.

One DynamoDB stand-in serving one request at a time; eight worker processes, each running
the real handler (botocore to the stand-in, a fake OpenAI that counts its mints), fire 50
simultaneous mints for one user whose limit is 5: exactly 5 secrets, 45 refusals with an
exact Retry-After, exactly 5 upstream mints. Repeated for many rounds in one run.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.aws import aws_client
from tests.support.clock import clear_of_a_minute_boundary
from tests.support.env import BASE_ENV, TABLE
from tests.support.identity import Issuer
from tests.support.workers import function_in_worker

pytestmark = pytest.mark.stack

WORKERS = 8
REQUESTS = 50
LIMIT = 5
ROUNDS = 8


# --- the worker side: runs in spawned processes -------------------------------------------

_handler: Any = None
_handlers: dict[str, Any] = {}  # by QUOTAS, for the tests that need other windows
_build: Any = None
_minted: list[str] = []


def _init_worker(env: dict[str, str], jwks: dict[str, Any], warm_token: str, ready: Any) -> None:
    global _handler, _build
    import httpx

    from tests.support.internet import openai_secret_response

    def openai(request: httpx.Request) -> httpx.Response:
        reply = openai_secret_response(json.loads(request.content))
        _minted.append(reply["value"])
        return httpx.Response(200, json=reply)

    app, deps, http = function_in_worker(env, jwks, openai)

    def _build(quotas: str, global_quotas: str = "") -> Any:
        settings = env | {"QUOTAS": quotas, "GLOBAL_QUOTAS": global_quotas}
        return app.create_handler(lambda: deps.build_container(settings, http=http))

    _handler = _build(env["QUOTAS"])
    # One mint before any round, as a warm Lambda environment has done: the first request of
    # a process builds its clients and fetches the key set, seconds on a loaded machine, and a
    # round must fit in one minute's window.
    from devstack.lambda_events import LambdaContext, http_event

    _handler(http_event(headers={"authorization": f"Bearer {warm_token}"}), LambdaContext())
    ready.put(os.getpid())


def _fire(
    token: str, count: int, start_at: float, quotas: str | None = None, pause: float = 0.0
) -> dict[str, Any]:
    from devstack.lambda_events import LambdaContext, http_event

    handler = _handler
    if quotas is not None:
        handler = _handlers.get(quotas) or _handlers.setdefault(quotas, _build(quotas))
    _minted.clear()
    event = http_event(headers={"authorization": f"Bearer {token}"})
    time.sleep(max(start_at - time.time(), 0))  # a barrier across processes
    results = []
    for n in range(count):
        if n:
            time.sleep(pause)
        sent = time.time()
        result = handler(event, LambdaContext())
        body = json.loads(result["body"])
        results.append(
            {
                "status": result["statusCode"],
                "retry_after": result["headers"].get("Retry-After"),
                "value": body.get("value"),
                "sent": sent,
                "at": time.time(),
            }
        )
    return {"results": results, "minted": list(_minted)}


def _fire_as_many(tokens: list[str], start_at: float, global_quotas: str) -> dict[str, Any]:
    """One mint for each of many users, against a handler with a global quota."""
    from devstack.lambda_events import LambdaContext, http_event

    key = f"{LIMIT}/minute|{global_quotas}"
    handler = _handlers.get(key) or _handlers.setdefault(
        key, _build(f"{LIMIT}/minute", global_quotas)
    )
    _minted.clear()
    time.sleep(max(start_at - time.time(), 0))
    results = []
    for token in tokens:
        event = http_event(headers={"authorization": f"Bearer {token}"})
        sent = time.time()
        result = handler(event, LambdaContext())
        body = json.loads(result["body"])
        results.append(
            {
                "status": result["statusCode"],
                "type": body.get("type", ""),
                "sent": sent,
                "at": time.time(),
            }
        )
    return {"results": results, "minted": list(_minted)}


# --- the tests ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool(dynamodb_url: str) -> Iterator[Any]:
    issuer = Issuer()
    env = BASE_ENV | {
        "AWS_ENDPOINT_URL": dynamodb_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "QUOTAS": f"{LIMIT}/minute",
    }
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    initargs = (env, issuer.jwks(), issuer.token(f"warm-up-{time.time_ns()}"), ready)
    with context.Pool(WORKERS, initializer=_init_worker, initargs=initargs) as workers:
        # Every process imported and warmed before the first round: else a round's one-second
        # barrier meets processes still importing, and the round outlasts its minute.
        for _ in range(WORKERS):
            ready.get(timeout=180)
        workers.issuer = issuer  # type: ignore[attr-defined]
        yield workers


# How long each round took, from its start to its last answer: a round's requests must all
# fall in one minute (the windows are minutes), and a loaded machine makes rounds longer.
ROUND_SECONDS = [2.5]


def wait_clear_of_a_minute_boundary() -> None:
    """Start a round only with more of the minute left than twice the longest round so far
    took (6 s at least): else wait for the next minute."""
    clear_of_a_minute_boundary(max(6.0, 2 * max(ROUND_SECONDS) + 1.0))


def test_fifty_simultaneous_mints_for_one_user_grant_exactly_five(
    pool: Any, dynamodb_url: str
) -> None:
    shares = [REQUESTS // WORKERS + (1 if i < REQUESTS % WORKERS else 0) for i in range(WORKERS)]
    clean, straddled = 0, 0
    while clean < ROUNDS:
        wait_clear_of_a_minute_boundary()
        subject = f"hot-user-{clean}-{time.time_ns()}"
        token = pool.issuer.token(subject)
        began = time.time()
        start_at = began + 1.0

        outcomes = pool.starmap(_fire, [(token, share, start_at) for share in shares])
        ROUND_SECONDS.append(time.time() - began)

        results = [r for o in outcomes for r in o["results"]]
        minted = [v for o in outcomes for v in o["minted"]]
        granted = [r for r in results if r["status"] == 200]
        refused = [r for r in results if r["status"] == 429]
        assert len(results) == REQUESTS
        assert len(granted) + len(refused) == REQUESTS, [r["status"] for r in results]
        assert len(minted) == len(granted) == len({r["value"] for r in granted})
        windows = counters(dynamodb_url, pool.issuer.issuer, subject, "c_minute_")
        assert sum(windows.values()) == len(granted), windows
        assert all(count <= LIMIT for count in windows.values()), windows
        if len({int(r[end] // 60) for r in results for end in ("sent", "at")}) > 1:
            # A round that outlasted the margin (a stalled machine) spans two minutes: two
            # windows, each held to its limit (checked above), so neither "exactly five" nor
            # the Retry-After bound applies. It does not count as one of the rounds.
            straddled += 1
            assert straddled <= 3, f"{straddled} rounds spanned a minute: {ROUND_SECONDS}"
            continue
        assert len(granted) == LIMIT, f"round {clean}: {len(granted)} granted"
        for r in refused:
            # The answer was computed at some moment between sending and receiving: on a
            # loaded machine those can be seconds apart, so the window's remaining seconds
            # are bounded by both ends (one second either side for rounding).
            most = math.ceil(60 - r["sent"] % 60)
            least = math.ceil(60 - r["at"] % 60)
            assert least - 1 <= int(r["retry_after"]) <= most + 1, (r, least, most)
        clean += 1


def test_a_per_second_window_holds_at_every_boundary_under_concurrency(
    pool: Any, dynamodb_url: str
) -> None:
    """Eight processes keep minting for one user for about two seconds, so the requests
    straddle second boundaries: each second's counter stops at its limit, a refusal names
    the next second, and the counters add up to exactly the secrets handed out."""
    per_second, each = 2, 12
    subject = f"boundary-user-{time.time_ns()}"
    token = pool.issuer.token(subject)
    start_at = time.time() + 1.0

    outcomes = pool.starmap(
        _fire, [(token, each, start_at, f"{per_second}/second,1000/minute", 0.15)] * WORKERS
    )

    results = [r for o in outcomes for r in o["results"]]
    granted = [r for r in results if r["status"] == 200]
    refused = [r for r in results if r["status"] == 429]
    minted = [v for o in outcomes for v in o["minted"]]
    assert len(granted) + len(refused) == len(results) == each * WORKERS
    assert len(granted) == len(minted) == len({r["value"] for r in granted})
    assert refused and all(r["retry_after"] == "1" for r in refused)
    seconds = counters(dynamodb_url, pool.issuer.issuer, subject, "c_second_")
    assert len(seconds) >= 2, seconds  # the run crossed at least one boundary
    assert max(seconds.values()) == per_second, seconds  # and was contended
    assert sum(seconds.values()) == len(granted), seconds
    assert sum(counters(dynamodb_url, pool.issuer.issuer, subject, "c_minute_").values()) == len(
        granted
    )


def test_a_global_cap_holds_across_fifty_users_minting_at_once(
    pool: Any, dynamodb_url: str
) -> None:
    """GLOBAL_QUOTAS caps everyone together, atomically: 50 users at once, a cap of 7, so
    exactly 7 secrets; the 43 others get 503 capacity-exhausted and keep their own unit."""
    cap = 7
    for _attempt in range(3):
        wait_clear_of_a_minute_boundary()
        run = time.time_ns()
        subjects = [f"crowd-{run}-{n}" for n in range(REQUESTS)]
        tokens = [pool.issuer.token(s) for s in subjects]
        began = time.time()
        start_at = began + 1.0
        # A per-run window name would need a new table; a minute window and a fresh minute do.
        chunks = [tokens[i::WORKERS] for i in range(WORKERS)]

        outcomes = pool.starmap(_fire_as_many, [(c, start_at, f"{cap}/minute") for c in chunks])
        ROUND_SECONDS.append(time.time() - began)

        results = [r for o in outcomes for r in o["results"]]
        if len({int(r[end] // 60) for r in results for end in ("sent", "at")}) == 1:
            break
        # Spanned two minutes (a stalled machine): two windows of the cap; run again.
    else:
        pytest.fail(f"every run spanned a minute boundary: {ROUND_SECONDS}")
    minted = [v for o in outcomes for v in o["minted"]]
    assert sorted(r["status"] for r in results) == [200] * cap + [503] * (REQUESTS - cap)
    assert all(r["type"].endswith(":capacity-exhausted") for r in results if r["status"] == 503)
    assert len(minted) == cap
    own = [
        sum(counters(dynamodb_url, pool.issuer.issuer, s, "c_minute_").values()) for s in subjects
    ]
    assert sorted(own) == [0] * (REQUESTS - cap) + [1] * cap  # refused users paid nothing


def counters(url: str, issuer: str, subject: str, prefix: str) -> dict[str, int]:
    """Every window counter of one user in the table, by attribute name."""
    from token_vendor.api.auth import Caller

    user = Caller(issuer=issuer, subject=subject, scopes=frozenset(), kid=None).user_hash
    client = aws_client(url)
    items = client.scan(TableName=TABLE)["Items"]
    return {
        name: int(value["N"])
        for item in items
        if item["pk"]["S"].startswith(f"quota#{user}#")
        for name, value in item.items()
        if name.startswith(prefix)
    }


@pytest.mark.usefixtures("one_minute")
def test_two_issuers_with_the_same_subject_are_counted_apart(
    make_handler: Any, issuer: Issuer
) -> None:
    from devstack.lambda_events import http_event
    from tests.support.handler import invoke

    other = Issuer(issuer="https://other-issuer.test/", keys=issuer.keys)
    first = make_handler()
    second = make_handler(AUTH_ISSUER=other.issuer)

    a = [
        invoke(
            first, http_event(headers={"authorization": f"Bearer {issuer.token('alice')}"})
        ).status
        for _ in range(4)
    ]
    b = [
        invoke(
            second, http_event(headers={"authorization": f"Bearer {other.token('alice')}"})
        ).status
        for _ in range(4)
    ]

    assert a == [200, 200, 200, 429] and b == [200, 200, 200, 429]  # QUOTAS is 3/minute here


@pytest.mark.parametrize("status", [500, 503])
def test_a_failed_upstream_mint_gives_the_unit_back(mint: Any, internet: Any, status: int) -> None:
    from tests.support.internet import openai_error

    internet.openai_script = [lambda r: openai_error(status, None, "boom")] * 2
    assert mint().status == 503

    assert [mint().status for _ in range(4)] == [200, 200, 200, 429]  # all 3 units still there
