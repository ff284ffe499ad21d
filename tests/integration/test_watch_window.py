"""The window before a call's watcher attaches, measured through the local stack (the token
function, the watcher's runner, the emulator, moto) with a real WebRTC caller, cold and warm:

- with the default wait (WATCHER_ANSWER_WAIT_SECONDS=3) the answer goes out only once the
  watcher holds the sideband and has sent the profile's session, so the browser cannot talk
  (or change the session) before it: no window, the call setup longer by the attach;
- without the wait (0), the window is the attach itself: printed, cold and warm.
Each figure is printed (`pytest -s`) for docs/watcher.md."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devstack import aws
from devstack.stack import TABLE, Stack, start_stack
from tests.support.caller import Caller
from tests.support.stack import api

pytestmark = pytest.mark.stack


def attached(stack: Stack, call_id: str) -> bool:
    item = aws.client("dynamodb", stack.urls["aws"]).get_item(
        TableName=TABLE, Key={"pk": {"S": f"watch#{call_id}"}}, ConsistentRead=True
    )
    return bool(item.get("Item", {}).get("attached", {}).get("BOOL"))


async def place_and_time(stack: Stack, user: str) -> tuple[float, float, bool]:
    """Seconds to the answer, seconds from the answer to the watcher's attach, and whether
    it had attached when the answer came."""
    caller = Caller()
    try:
        offer = await caller.offer()
        client = api(stack, user)
        started = time.monotonic()
        reply = await asyncio.to_thread(
            client.post, "/v1/realtime/calls", content=offer,
            headers={"Content-Type": "application/sdp"},
        )  # fmt: skip
        answered = time.monotonic()
        assert reply.status_code == 201, reply.text
        call_id = reply.headers["location"].rsplit("/", 1)[-1]
        before = await asyncio.to_thread(attached, stack, call_id)
        while not await asyncio.to_thread(attached, stack, call_id):
            assert time.monotonic() - answered < 15, "the watcher never attached"
            await asyncio.sleep(0.005)
        window = 0.0 if before else time.monotonic() - answered
        await asyncio.to_thread(client.post, f"/v1/realtime/calls/{call_id}/hangup")
        return answered - started, window, before
    finally:
        await caller.close()


@pytest.fixture(scope="module", params=["3", "0"], ids=["wait", "no-wait"])
def waiting(request: Any) -> Iterator[tuple[Stack, str]]:
    wait = str(request.param)
    with start_stack(extra_env={"WATCHER_ANSWER_WAIT_SECONDS": wait}) as running:
        yield running, wait


def test_the_window_before_the_watcher_attaches_cold_and_warm(
    waiting: tuple[Stack, str],
) -> None:
    stack, wait = waiting
    cold = asyncio.run(place_and_time(stack, "first"))
    warm = [asyncio.run(place_and_time(stack, f"user-{n}")) for n in range(3)]
    for name, (setup, window, before) in [("cold", cold)] + [("warm", w) for w in warm]:
        print(
            f"answer wait {wait} s: {name}: call setup {setup * 1000:.0f} ms, "
            f"attached before the answer: {before}, window {window * 1000:.0f} ms"
        )
    if wait != "0":  # the default: the answer waits for the attach, so there is no window
        assert all(before for _, _, before in [cold, *warm])
    else:  # no wait: the window is the attach itself; a warm watcher's is short
        assert min(window for _, window, _ in warm) < 1.0
