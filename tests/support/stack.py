"""The local stack read from outside, as the stack tests check it: the emulator's record of a
call, and what the ledger (the stack's moto DynamoDB) holds of a call's charges and a user's
day, and what the emulator's responses cost; and `eventually`, which waits for a check inside a test's event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from token_vendor.core.pricing import DEFAULT_PRICES_FILE, load_prices, response_cost

from devstack import aws
from devstack.stack import TABLE, Stack


def emulator_url(stack: Stack) -> str:
    return stack.urls["openai"].removesuffix("/v1")


def emulator_state(stack: Stack) -> dict[str, Any]:
    return dict(httpx.get(emulator_url(stack) + "/__emulator/state", timeout=10).json())


def emulator_call(stack: Stack, call_id: str) -> dict[str, Any]:
    """The emulator's record of the call, open or ended; {} when it knows of none."""
    state = emulator_state(stack)
    for call in state["open_calls"] + state["ended_calls"]:
        if call["id"] == call_id:
            return dict(call)
    return {}


def spent_today(stack: Stack, user: str) -> int:
    """Micro-dollars `user` (the ledger's name for them) spent today."""
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    item = aws.client("dynamodb", stack.urls["aws"]).get_item(
        TableName=TABLE, Key={"pk": {"S": f"spend#user#{user}#{day}"}}, ConsistentRead=True
    )
    return int(item.get("Item", {}).get("micros", {}).get("N", "0"))


def call_charged(stack: Stack, call_id: str) -> int:
    """Micro-dollars on the call's meter."""
    item = aws.client("dynamodb", stack.urls["aws"]).get_item(
        TableName=TABLE, Key={"pk": {"S": f"meter#{call_id}"}}, ConsistentRead=True
    )
    return int(item.get("Item", {}).get("micros", {}).get("N", "0"))


def charges(stack: Stack, call_id: str) -> dict[str, int]:
    """The events charged to the call, one item each (`charge#<call>#<event>`), and the
    micro-dollars of each."""
    prefix = f"charge#{call_id}#"
    items = aws.client("dynamodb", stack.urls["aws"]).scan(TableName=TABLE, ConsistentRead=True)
    return {
        item["pk"]["S"].removeprefix(prefix): int(item["micros"]["N"])
        for item in items["Items"]
        if item["pk"]["S"].startswith(prefix)
    }


def priced(usages: list[dict[str, Any]]) -> int:
    """What the emulator's responses cost, from the shipped table, one rounding each."""
    problems: list[str] = []
    table = load_prices(DEFAULT_PRICES_FILE, "", problems)
    return sum(response_cost(u["usage"], table.for_model(u["model"])[0]) for u in usages)


def charged_events(stack: Stack, call_id: str) -> set[str]:
    return set(charges(stack, call_id))


async def eventually(check: Callable[[], object], timeout: float, what: str) -> float:
    """Polls `check` (in a thread: it may block on HTTP) until it is truthy; the seconds it
    took. The event loop runs meanwhile, so a caller on it keeps talking."""
    started = time.monotonic()
    while not await asyncio.to_thread(check):
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def api(stack: Stack, user: str) -> httpx.Client:
    return httpx.Client(
        base_url=stack.urls["web"],  # the API's one door, as deployed
        headers={"Authorization": f"Bearer {stack.token(user)}"},
        timeout=15,
    )
