"""A call no watcher can hold is ended, and the page says so (Debian's Chromium, the local
stack): OpenAI's emulator refuses every sideband, the answer stops waiting for the watcher,
the watcher's attach window runs out, and the call ends as `unwatched`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.stack import Stack, start_stack
from tests.support.browser import TIMEOUT, live_calls, sign_in, start_call, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.stack]
ATTACH_SECONDS = 2
UNWATCHED_SENTENCE = (
    "This conversation was ended because the service could not keep track of it. "
    "Press Start talking to try again."
)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with start_stack(
        extra_env={
            "WATCHER_ANSWER_WAIT_SECONDS": "0.5",
            "WATCHER_ATTACH_SECONDS": str(ATTACH_SECONDS),
        },
        web_flow="calls",
    ) as running:
        base = running.urls["openai"].removesuffix("/v1")
        httpx.post(f"{base}/__emulator/faults", json={"sideband": "503"}, timeout=5)
        yield running


def test_a_call_no_watcher_can_hold_ends_and_the_page_says_why(page: Any, stack: Stack) -> None:
    sign_in(page, stack, "unseen")
    call_id = str(start_call(page)["id"])
    # From the moment the page has its call: the setup before it (a browser's offer, the
    # answer) can take seconds on a loaded machine and is not what this bound is about.
    started = time.monotonic()

    wait_until(page, f"document.body.innerText.includes({UNWATCHED_SENTENCE!r})", TIMEOUT)
    took = time.monotonic() - started

    assert took < ATTACH_SECONDS + 5, took  # the attach window, and the end itself
    assert live_calls(stack, "unseen")["data"] == []
    state = httpx.get(stack.urls["openai"].removesuffix("/v1") + "/__emulator/state").json()
    (ended,) = [c for c in state["ended_calls"] if c["id"] == call_id]
    assert ended["ended_by"] == "hangup"  # by the server's watcher, not a drop
