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
from token_vendor.core.ids import UserId
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
    """After the calls above (each GPT-Live create bills 15 s up front): the report's spend
    is the spend ledger's, to the micro-dollar."""
    assert ops(stack, "usage", "--format", "json") == 0
    rows = {r["user"]: r for r in json.loads(capsys.readouterr().out)}
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing",
        region_name="us-east-1",
    )  # fmt: skip
    dynamodb = session.client("dynamodb", endpoint_url=stack.urls["aws"])
    ledger = SpendLedger(TABLE, SpendLimits(), dynamodb)
    # The calls admitted, each refused one given back (freda's second: her plan's one call at
    # once; olive's second before her override; bert's while he was blocked).
    admitted = {"freda": 1, "paula": 2, "olive": 2, "bert": 2}
    for name, calls in admitted.items():
        user = UserId(hash_of(stack, name))
        spent = ledger.today(user).user_micros
        assert spent > 0 and rows[user]["spend_micros"] == spent
        assert rows[user]["spend_usd"] == f"{spent / 1e6:.6f}"
        assert rows[user]["calls"] == calls, name


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
