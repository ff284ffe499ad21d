"""GPT-Live in a real browser: with `flow: "live"` the page places a Live session through our API
(OpenAI's JSON create at /v1/live/sessions; the browser never holds an OpenAI credential), shows
Live's transcript deltas, hangs up through the API, and words the server's end when a spent
budget closes the session, all under the production CSP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.stack import Stack, start_stack
from tests.support.browser import (
    TIMEOUT,
    live_calls,
    shot,
    sign_in,
    use_flow,
    wait_state,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.stack]
LIMIT_USD = "0.016"  # the create's 15 s and a few seconds more: the goodbye comes quickly


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with start_stack(quotas="20/minute,200/day", web_flow="live") as s:
        yield s


@pytest.fixture(scope="module")
def budget_stack() -> Iterator[Stack]:
    with start_stack(
        quotas="20/minute,200/day",
        web_flow="live",
        extra_env={"SPEND_LIMITS": f"usd/day={LIMIT_USD}"},
    ) as s:
        yield s


def emulator(stack: Stack) -> dict[str, Any]:
    base = stack.urls["openai"].removesuffix("/v1")
    return dict(httpx.get(f"{base}/__emulator/state", timeout=10).json())


def start_live(page: Any) -> str:
    """Start talking; the session's id, from our API's answer to the page."""
    with page.expect_response(
        lambda r: r.url.endswith("/v1/live/sessions") and r.request.method == "POST"
    ) as placed:
        page.get_by_role("button", name="Start talking").click()
    response = placed.value
    assert response.status == 201, response.text()
    wait_state(page, "connected")
    return str(response.json()["session"]["id"])


def test_a_signed_in_user_talks_to_a_live_session_and_hangs_up(page: Any, stack: Stack) -> None:
    sign_in(page, stack, "liv")
    assert page.locator("#say").is_hidden()  # Live takes no typed messages from the page

    session_id = start_live(page)

    listed = live_calls(stack, "liv")["data"]
    assert [(c["id"], c["object"]) for c in listed] == [(session_id, "live.session")]
    base = stack.urls["openai"].removesuffix("/v1")
    httpx.post(
        f"{base}/__emulator/live/sessions/{session_id}/script",
        json={"caller_says": "what time is it"},
        timeout=10,
    ).raise_for_status()
    wait_until(
        page,
        "document.getElementById('transcript').innerText.includes('You said: what time is it')",
        TIMEOUT,
    )
    shot(page, "live-talking")
    page.get_by_role("button", name="Hang up").click()
    wait_until(page, "document.getElementById('status').innerText === 'Conversation ended.'")
    wait_until(page, "document.documentElement.dataset.state === 'idle'")
    (ended,) = [s for s in emulator(stack)["live_sessions_ended"] if s["id"] == session_id]
    # The page closes its peer at once (remote_hangup), and hangs up through our API, which
    # closes the session through the sideband if it is still up (close_requested).
    assert ended["ended_by"] in ("remote_hangup", "close_requested")
    assert live_calls(stack, "liv")["data"] == []


def test_a_spent_budget_ends_the_live_session_in_a_sentence(page: Any, budget_stack: Stack) -> None:
    sign_in(page, budget_stack, "frugal")
    use_flow(page, "live")
    start_live(page)

    wait_until(
        page,
        "document.getElementById('status').innerText.includes(\"today's budget for calls is used up\")",
        40_000,
    )
    shot(page, "live-budget")
    assert "used up" in page.locator("#transcript").inner_text()  # the goodbye, spoken
