"""The watcher as the product uses it: the token function places a call (POST
/v1/realtime/calls with the user's JWT) and starts its watcher; the local stack runs both
functions, the Scheduler's stand-in, the emulator and moto. A real WebRTC caller (aiortc)
plays the browser.

Proves: a caller who leaves has the unused minutes back within seconds (not at the deadline);
a user whose budget runs out hears a goodbye, the call ends, new calls are refused with 429,
and `GET /v1/realtime/calls` says what is left; a killed watcher costs only live metering:
the deadline still ends and settles the call."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiortc.exceptions import InvalidStateError

from devstack.stack import Stack, start_stack
from tests.support.caller import Caller
from tests.support.realtime import user_says
from tests.support.stack import api, call_charged, charged_events, emulator_call, eventually, priced

pytestmark = pytest.mark.stack

LIMIT_USD = "0.03"


async def place(client: httpx.Client, caller: Caller) -> str:
    offer = await caller.offer()
    reply = await asyncio.to_thread(
        client.post,
        "/v1/realtime/calls",
        content=offer,
        headers={"Content-Type": "application/sdp"},
    )
    assert reply.status_code == 201, reply.text
    call_id = reply.headers["location"].rsplit("/", 1)[-1]
    await caller.accept(reply.text)
    await caller.until("conversation.created")
    return call_id


def watched(stack: Stack, call_id: str) -> bool:
    return bool(emulator_call(stack, call_id).get("sidebands") == 1)


# --- a caller who leaves ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with start_stack(
        extra_env={
            "CALL_LIMITS": "concurrent=2,minutes/day=60",
            # A floor of one micro-dollar: the budget's goodbye is under test here, not the
            # admission's floor (one response like the profile's dearest is more than 0.03).
            "SPEND_LIMITS": f"usd/day={LIMIT_USD},floor:usd=0.000001",
        }
    ) as running:
        yield running


def test_closing_the_tab_returns_the_minutes_within_seconds(stack: Stack) -> None:
    seconds = asyncio.run(asyncio.wait_for(_leave(stack), 60))
    print(f"caller left -> minutes back in {seconds * 1000:.0f} ms")
    assert seconds < 5


async def _leave(stack: Stack) -> float:
    caller = Caller(microphone=True)
    with api(stack, "leaver") as client:
        try:
            call_id = await place(client, caller)
            await eventually(lambda: watched(stack, call_id), 10, "watcher attached")
            during = client.get("/v1/realtime/calls").json()
            assert [c["id"] for c in during["data"]] == [call_id]
            assert during["minutes_left_today"] < 60  # the call's minutes are reserved
        finally:
            await caller.close()  # the tab closes: the peer goes away, nobody hangs up
        left_at = time.monotonic()
        await eventually(
            lambda: client.get("/v1/realtime/calls").json()["data"] == [], 20, "settled"
        )
        seconds = time.monotonic() - left_at
        after = client.get("/v1/realtime/calls").json()
        # Only the seconds the call lasted are gone (rounded to whole minutes).
        assert after["minutes_left_today"] >= 59
        assert emulator_call(stack, call_id)["ended_by"] in ("peer", "hangup")
        return seconds


# --- a user whose budget runs out --------------------------------------------------------------


def test_a_spent_budget_ends_the_call_with_a_goodbye_and_refuses_the_next(stack: Stack) -> None:
    goodbye, overrun, listing, refused = asyncio.run(asyncio.wait_for(_spend_it_all(stack), 90))
    print(f"budget {LIMIT_USD} USD overrun by {overrun} micro-dollars")
    assert goodbye.startswith("As instructed: The user's budget for today is used up.")
    assert listing["spend_left_today_usd"] == 0 and listing["data"] == []
    assert listing["spent_today_usd"] >= float(LIMIT_USD)
    assert refused.status_code == 429
    problem = refused.json()
    assert problem["type"].endswith("spend-limit") and "budget" in problem["detail"]
    assert 0 < int(refused.headers["retry-after"]) <= 86400


async def _spend_it_all(stack: Stack) -> tuple[str, int, dict[str, Any], httpx.Response]:
    caller = Caller(microphone=False)
    with api(stack, "spender") as client:
        try:
            call_id = await place(client, caller)
            await eventually(lambda: watched(stack, call_id), 10, "watcher attached")
            goodbye = ""
            for turn in range(40):
                caller.send(user_says(f"tell me a long story, part {turn}"))
                caller.send({"type": "response.create"})
                events = await caller.until("response.done")
                # A person listens to the answer before speaking again (its audio plays for
                # longer than its events take to arrive). The goodbye may come meanwhile.
                await asyncio.sleep(0.3)
                events += await _arrived(caller)
                goodbye = next((s for s in _said(events) if s.startswith("As instructed:")), "")
                if goodbye:
                    break
            assert goodbye, "no goodbye came"
            await asyncio.wait_for(caller.channel_closed.wait(), 10)  # and the call ends
        finally:
            await caller.close()
        ended = emulator_call(stack, call_id)
        assert ended["ended_by"] == "hangup"
        listing = client.get("/v1/realtime/calls").json()
        spent = round(listing["spent_today_usd"] * 1_000_000)
        overrun = spent - round(float(LIMIT_USD) * 1_000_000)
        offer = await Caller(microphone=False).offer()
        refused = client.post(
            "/v1/realtime/calls", content=offer, headers={"Content-Type": "application/sdp"}
        )
        return goodbye, overrun, listing, refused


async def _arrived(caller: Caller) -> list[dict[str, Any]]:
    """The events already received, and the rest of a response they begin: until its
    `response.done`, or until the call ends (a hangup right after the goodbye may close the
    data channel before its last events are delivered, as a real peer's close would)."""
    events: list[dict[str, Any]] = []
    while not caller.events.empty():
        events.append(await caller.next_event())
    begun = {e["response"]["id"] for e in events if e["type"] == "response.created"}
    done = {e["response"]["id"] for e in events if e["type"] == "response.done"}
    while begun - done and not caller.channel_closed.is_set():
        with contextlib.suppress(TimeoutError):
            event = await caller.next_event(timeout=0.5)
            events.append(event)
            if event["type"] == "response.done":
                done.add(event["response"]["id"])
    return events


def _said(events: list[dict[str, Any]]) -> list[str]:
    """What the assistant said, one string per response."""
    said: dict[str, str] = {}
    for e in events:
        if e["type"].endswith("transcript.delta"):
            said[e["response_id"]] = said.get(e["response_id"], "") + e["delta"]
    return list(said.values())


def say(caller: Caller, text: str) -> bool:
    """The user speaks and asks for a response; False if the call has ended already."""
    try:
        caller.send(user_says(text))
        caller.send({"type": "response.create"})
    except InvalidStateError:  # the channel closed under us: the call is over
        return False
    return True


async def response_or_end(caller: Caller, timeout: float = 10) -> list[dict[str, Any]]:
    """The caller's events up to the next `response.done`, or up to the end of the call."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["type"] != "response.done":
        get = asyncio.ensure_future(caller.events.get())
        closed = asyncio.ensure_future(caller.channel_closed.wait())
        done, _ = await asyncio.wait({get, closed}, timeout=timeout, return_when="FIRST_COMPLETED")
        closed.cancel()
        if get in done:
            seen.append(get.result())
            continue
        get.cancel()
        assert done, f"neither a response.done nor the end within {timeout} s"
        break
    return seen


# --- a watcher that dies ---------------------------------------------------------------------------


def test_a_killed_watcher_leaves_the_deadline_to_end_and_settle_the_call() -> None:
    with start_stack(
        max_call_seconds=10,
        # The listing reports the spend only where a budget is set; this one never binds.
        extra_env={"SCHEDULER_PRECISION_SECONDS": "1", "SPEND_LIMITS": "usd/day=100.00"},
    ) as stack:
        result = asyncio.run(asyncio.wait_for(_killed(stack), 60))
    ended, lasted, listing, money = result
    assert ended["ended_by"] == "hangup"  # by the scheduled deadline: nothing else was left
    # The call ends at the last whole second at or before its start + 10 s, and the
    # schedule fires in the second before that (schedule.fire_time): 8 to 9 s after the
    # emulator's start, which comes a little after `started`.
    assert 8 <= lasted <= 16
    assert listing["data"] == [] and listing["minutes_left_today"] == 59
    # Spend charged before the kill stays charged, to the micro-dollar of the emulator's own
    # record; the response after it (if it finished before the deadline) went unmetered:
    # only live metering is lost; the deadline's settlement counted nothing again.
    usages = ended["usages"]
    assert 1 <= len(usages) <= 2
    before_kill = priced(usages[:1])
    assert before_kill > 0
    assert money["charged_at_kill"] == money["charged_after_settle"] == before_kill
    assert money["events_after_settle"] == {f"resp:{usages[0]['response_id']}"}
    assert money["spent_at_kill"] == money["spent_after_settle"] == before_kill


def meter(stack: Stack, call_id: str) -> tuple[int, set[str]]:
    """The call's meter: micro-dollars charged, and the events they were charged for."""
    return call_charged(stack, call_id), charged_events(stack, call_id)


def spent_micros(client: httpx.Client) -> int:
    return round(client.get("/v1/realtime/calls").json()["spent_today_usd"] * 1_000_000)


async def _killed(
    stack: Stack,
) -> tuple[dict[str, Any], float, dict[str, Any], dict[str, Any]]:
    caller = Caller(microphone=False)
    money: dict[str, Any] = {}
    with api(stack, "orphan") as client:
        try:
            started = time.monotonic()
            call_id = await place(client, caller)
            await eventually(lambda: watched(stack, call_id), 10, "watcher attached")
            caller.send(user_says("hello"))
            caller.send({"type": "response.create"})
            await caller.until("response.done")
            await eventually(lambda: meter(stack, call_id)[0] > 0, 5, "charged")
            money["charged_at_kill"] = meter(stack, call_id)[0]
            money["spent_at_kill"] = spent_micros(client)
            # SIGKILL: no close frame, no hangup, no settle, the lease held.
            stack.processes["watcher"].signal(signal.SIGKILL)
            await eventually(
                lambda: emulator_call(stack, call_id).get("sidebands") == 0, 10, "drop"
            )
            assert emulator_call(stack, call_id).get("ended_by") is None  # the call lives on
            assert say(caller, "are you still there")  # nobody meters this one
            await response_or_end(caller)
            await asyncio.wait_for(caller.channel_closed.wait(), 20)
            lasted = time.monotonic() - started
        finally:
            await caller.close()
        await eventually(
            lambda: client.get("/v1/realtime/calls").json()["data"] == [], 10, "settled"
        )
        money["charged_after_settle"], money["events_after_settle"] = meter(stack, call_id)
        money["spent_after_settle"] = spent_micros(client)
        return (
            emulator_call(stack, call_id),
            lasted,
            client.get("/v1/realtime/calls").json(),
            money,
        )
