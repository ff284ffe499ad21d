"""Plans and the operator's controls through the local stack: both functions, moto, the
Scheduler's stand-in and the emulator's GPT-Live, reached through the page's origin; the
operator's command line (ops/) against the stack's moto.

Proves: two users on two plans (named by a scope of their tokens) get their plans' limits; an
operator's override admits a call the plan refuses; a block ends a live call within seconds
(its watcher, end_reason `blocked`) and refuses the next request (403 `user-blocked`), and
lifting it lets the user in again."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from token_vendor.core.ids import CallId, UserId
from token_vendor.core.spend import SpendLedger, SpendLimits

from devstack.idp import subject_for
from devstack.stack import TABLE, Stack, start_stack
from ops.__main__ import main as ops_main
from ops.users import user_id
from tests.support.live import LiveCaller, conform_create
from tests.support.stack import emulator_url, eventually

pytestmark = pytest.mark.stack

PLANS = {
    "plans": {
        "pro": {
            "title": "Pro",
            "match": ["plan:pro"],
            "quotas": "20/minute,200/day",
            "call_limits": "concurrent=2,minutes/day=60",
            "spend_limits": "usd/day=5.00",
        },
        "free": {
            "title": "Free",
            "match": ["plan:free"],
            "quotas": "3/minute,30/day",
            "call_limits": "concurrent=1,minutes/day=10",
            "spend_limits": "usd/day=0.50",
        },
    }
}
BLOCK_ENDS_WITHIN_S = 5.0  # the watcher polls every 2 s; its loop wakes twice a second


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    plans = tmp_path_factory.mktemp("plans") / "plans.json"
    plans.write_text(json.dumps(PLANS))
    env = {
        "PLANS_FILE": str(plans),
        "PLAN_CLAIM": "scope",
        "DEFAULT_PLAN": "free",
        "SPEND_LIMITS": "usd/day=2.00",
        "CALL_LIMITS": "concurrent=2,minutes/day=60",
        "CALL_ROUTE_QUOTAS": "300/minute,5000/day",  # the tests list calls after each step
    }
    with start_stack(extra_env=env, max_call_seconds=120, live_usage_every_s=0.5) as running:
        yield running


def client(stack: Stack, user: str, plan: str) -> httpx.Client:
    token = stack.token(user, scopes=f"openid realtime:mint plan:{plan}")
    return httpx.Client(
        base_url=stack.urls["web"],  # the API's one door, as deployed
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
    )


def ops(stack: Stack, *args: str) -> int:
    """The operator's command line against the stack's moto."""
    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    return ops_main(["--endpoint", stack.urls["aws"], "--table", TABLE, *args], session=session)


def hash_of(stack: Stack, user: str) -> str:
    return user_id(subject_for(user), stack.urls["issuer"])


async def place(api: httpx.Client) -> tuple[httpx.Response, LiveCaller]:
    """A GPT-Live create from a real WebRTC peer: the answer, and the peer (connected when
    the answer was 201)."""
    caller = LiveCaller(microphone=False)
    offer = await caller.offer()
    reply = await asyncio.to_thread(
        api.post, "/v1/live/sessions", json={"transport": {"type": "webrtc", "sdp": offer}}
    )
    if reply.status_code == 201:
        await caller.accept(conform_create(reply).transport.sdp)
        assert (await caller.next_event())["type"] == "session.started"
    return reply, caller


async def hang_up_all(api: httpx.Client, callers: list[LiveCaller]) -> None:
    for call in api.get("/v1/realtime/calls").json()["data"]:
        await asyncio.to_thread(api.post, f"/v1/live/sessions/{call['id']}/hangup")
    for caller in callers:
        await caller.close()


def session_ended(stack: Stack, session_id: str) -> bool:
    state = httpx.get(emulator_url(stack) + "/__emulator/state", timeout=10).json()
    return any(s["id"] == session_id for s in state["live_sessions_ended"])


def policy(reply: httpx.Response) -> str:
    return reply.headers.get("ratelimit-policy", "")


# --- plans -------------------------------------------------------------------------------------


def test_two_users_on_two_plans_get_their_plans_limits(stack: Stack) -> None:
    asyncio.run(asyncio.wait_for(_two_plans(stack), 90))


async def _two_plans(stack: Stack) -> None:
    with client(stack, "freda", "free") as free, client(stack, "paula", "pro") as pro:
        free_plan = free.get("/v1/realtime/calls").json()
        pro_plan = pro.get("/v1/realtime/calls").json()
        assert free_plan["plan"]["name"] == "free" and free_plan["minutes_left_today"] == 10
        assert free_plan["plan"]["spend_per_day_usd"] == 0.5
        assert free_plan["spend_left_today_usd"] == 0.5
        assert pro_plan["plan"]["name"] == "pro" and pro_plan["minutes_left_today"] == 60
        assert pro_plan["spend_left_today_usd"] == 5.0

        callers: list[LiveCaller] = []
        try:
            first, caller = await place(free)
            callers.append(caller)
            second, caller = await place(free)
            callers.append(caller)
            assert first.status_code == 201 and '"minute";q=3' in policy(first)
            assert second.status_code == 429, second.text
            assert second.json()["policy"] == "concurrent"  # the free plan's one call at once

            for _ in range(2):
                reply, caller = await place(pro)
                callers.append(caller)
                assert reply.status_code == 201, reply.text
                assert '"minute";q=20' in policy(reply)
        finally:
            await hang_up_all(free, callers[:2])
            await hang_up_all(pro, callers[2:])


# --- controls ----------------------------------------------------------------------------------


def test_an_override_admits_a_call_the_plan_refuses(stack: Stack) -> None:
    asyncio.run(asyncio.wait_for(_override(stack), 90))


async def _override(stack: Stack) -> None:
    user = hash_of(stack, "olive")
    with client(stack, "olive", "free") as api:
        callers: list[LiveCaller] = []
        try:
            first, caller = await place(api)
            callers.append(caller)
            refused, caller = await place(api)
            callers.append(caller)
            assert first.status_code == 201 and refused.status_code == 429

            assert ops(stack, "override", user, "call_limits", "concurrent=2,minutes/day=10",
                       "--for", "1h") == 0  # fmt: skip
            admitted, caller = await place(api)
            callers.append(caller)

            assert admitted.status_code == 201, admitted.text
            assert api.get("/v1/realtime/calls").json()["plan"]["concurrent_calls"] == 2
        finally:
            await hang_up_all(api, callers)
            assert ops(stack, "clear", user, "call_limits") == 0


def test_a_block_ends_a_live_call_within_seconds_and_refuses_the_next_request(
    stack: Stack,
) -> None:
    took, why, refused, after = asyncio.run(asyncio.wait_for(_block(stack), 90))
    print(f"a block ended the live call {took:.2f} s after the operator's command")
    assert took < BLOCK_ENDS_WITHIN_S
    assert why == "blocked"
    assert refused.status_code == 403
    assert refused.json()["type"].endswith(":user-blocked")
    assert after == 201  # unblocked: in again


async def _block(stack: Stack) -> tuple[float, str, httpx.Response, int]:
    user = hash_of(stack, "bert")
    with client(stack, "bert", "pro") as api:
        callers: list[LiveCaller] = []
        try:
            placed, caller = await place(api)
            callers.append(caller)
            assert placed.status_code == 201, placed.text
            session_id = conform_create(placed).session.id

            started = time.monotonic()
            assert ops(stack, "block", user, "--reason", "test") == 0
            # Ended upstream: the emulator's record of the session says so.
            await eventually(lambda: session_ended(stack, session_id), 10, "ended")
            took = time.monotonic() - started
            ended = api.post(f"/v1/live/sessions/{session_id}/hangup").json()

            refused, caller = await place(api)
            callers.append(caller)
            assert ops(stack, "unblock", user) == 0
            again, caller = await place(api)
            callers.append(caller)
            return took, ended["end_reason"], refused, again.status_code
        finally:
            await hang_up_all(api, callers)


def test_the_usage_report_names_the_users_who_spent(stack: Stack, capsys: Any) -> None:
    """Users of its own, with calls placed through the stack and charges beside them: the
    report's calls are the calls admitted, its spend the sum of every charge on their calls
    (each GPT-Live create's 15 s up front, the watcher's usage, and the charges added here),
    to the micro-dollar. Runs alone: nothing from another test is counted."""
    placed = asyncio.run(asyncio.wait_for(_spend(stack, {"uma": 2, "ugo": 1}), 90))
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing",
        region_name="us-east-1",
    )  # fmt: skip
    dynamodb = session.client("dynamodb", endpoint_url=stack.urls["aws"])
    ledger = SpendLedger(TABLE, SpendLimits(), dynamodb)
    for name, calls in placed.items():
        for n, call_id in enumerate(calls):  # as the watcher charges a response's usage
            ledger.charge(call_id=call_id, user=UserId(hash_of(stack, name)),
                          event_key=f"resp:report-{n}", micros=123_457 * (n + 1))  # fmt: skip

    def report() -> dict[str, Any]:
        capsys.readouterr()
        assert ops(stack, "usage", "--format", "json") == 0
        return {r["user"]: r for r in json.loads(capsys.readouterr().out)}

    def charged(name: str) -> int:
        return sum(ledger.call_total(call_id) for call_id in placed[name])

    def agrees() -> bool:  # a hung-up call's watcher may still be charging its last usage
        rows = report()
        return all(rows[hash_of(stack, name)]["spend_micros"] == charged(name) for name in placed)

    asyncio.run(eventually(agrees, 10, "the report equals the charges"))
    rows = report()
    for name, calls in placed.items():
        row = rows[hash_of(stack, name)]
        added = sum(123_457 * (n + 1) for n in range(len(calls)))
        assert row["spend_micros"] == charged(name) > added, name  # the creates' 15 s too
        assert row["spend_usd"] == f"{row['spend_micros'] / 1e6:.6f}"
        assert row["calls"] == len(calls), name


async def _spend(stack: Stack, calls: dict[str, int]) -> dict[str, list[CallId]]:
    """Each user places their calls (one at a time) and hangs up: their call ids."""
    placed: dict[str, list[CallId]] = {}
    for name, count in calls.items():
        with client(stack, name, "pro") as api:
            callers: list[LiveCaller] = []
            try:
                for _ in range(count):
                    reply, caller = await place(api)
                    callers.append(caller)
                    assert reply.status_code == 201, reply.text
                    placed.setdefault(name, []).append(CallId(conform_create(reply).session.id))
            finally:
                await hang_up_all(api, callers)
    return placed


def test_the_operator_ends_one_live_call_through_its_watcher(stack: Stack, capsys: Any) -> None:
    why, other = asyncio.run(asyncio.wait_for(_end_one(stack, capsys), 90))
    assert why == "operator"
    assert other == 201  # the user is not blocked: the next call is placed


async def _end_one(stack: Stack, capsys: Any) -> tuple[str, int]:
    user = hash_of(stack, "enid")
    with client(stack, "enid", "pro") as api:
        callers: list[LiveCaller] = []
        try:
            placed, caller = await place(api)
            callers.append(caller)
            session_id = conform_create(placed).session.id
            capsys.readouterr()
            assert await asyncio.to_thread(ops, stack, "calls", user) == 0
            assert [c["id"] for c in json.loads(capsys.readouterr().out)] == [session_id]

            assert await asyncio.to_thread(ops, stack, "end", user, session_id) == 0
            assert f"ended {session_id} (end_reason operator)" in capsys.readouterr().out
            why = api.post(f"/v1/live/sessions/{session_id}/hangup").json()["end_reason"]
            again, caller = await place(api)
            callers.append(caller)
            return why, again.status_code
        finally:
            await hang_up_all(api, callers)
