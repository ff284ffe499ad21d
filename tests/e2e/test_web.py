"""The web client in a real browser: sign in through PKCE, talk, type, mute, hang up; and
every failure the user can meet, as a sentence with a next step."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from devstack.stack import start_stack
from tests.support.browser import TIMEOUT, alert, shot, sign_in, wait_state, wait_until
from tests.support.clock import clear_of_a_minute_boundary
from tests.support.env import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.stack]


def state(page: Any) -> str:
    return page.evaluate("document.documentElement.dataset.state")


def faults(stack: Any, **switches: Any) -> None:
    base = stack.urls["openai"].removesuffix("/v1")
    httpx.post(f"{base}/__emulator/faults", json=switches).raise_for_status()


def test_sign_in_talk_type_mute_and_hang_up(page: Any, stack: Any) -> None:
    sign_in(page, stack)
    shot(page, "1-signed-in")

    page.get_by_role("button", name="Start talking").click()
    wait_state(page, "connected")

    # the remote audio plays: a live track, and time advancing on the element
    wait_until(
        page,
        """(() => { const a = document.getElementById('remote-audio');
                   return a.srcObject && a.srcObject.getAudioTracks().some(t => t.readyState === 'live')
                          && !a.paused && a.currentTime > 0.3; })()""",
        TIMEOUT,
    )
    assert "Connected" in page.locator("#status").inner_text()
    assert page.locator("#quota").inner_text().endswith("this minute")
    assert page.locator("#time-left").inner_text().startswith(("60:", "59:"))
    metrics = page.evaluate("window.__rtvMetrics")
    shot(page, "2-connected")

    page.get_by_label("Type a message").fill("What's the weather like?")
    page.get_by_role("button", name="Send").click()
    page.locator("#transcript li.assistant").filter(
        has_text="You said: What's the weather like?"
    ).wait_for(timeout=TIMEOUT)
    assert (
        page.locator("#transcript li.user").filter(has_text="What's the weather like?").count() == 1
    )
    shot(page, "3-reply")

    page.get_by_role("button", name="Mute").click()
    assert page.get_by_role("button", name="Unmute").get_attribute("aria-pressed") == "true"
    muted = page.evaluate("document.getElementById('remote-audio') && true")
    assert muted and "muted" in page.locator("#status").inner_text().lower()
    shot(page, "4-muted")

    page.get_by_role("button", name="Hang up").click()
    wait_state(page, "idle")
    assert page.locator("#status").inner_text() == "Conversation ended."
    shot(page, "5-hung-up")

    # the secret never reached storage, and the page never logged it
    stored = page.evaluate("JSON.stringify(Object.assign({}, sessionStorage, localStorage))")
    assert "ek_" not in stored
    record_connect_time(metrics)


def record_connect_time(metrics: dict[str, Any]) -> None:
    parts = {
        k: round(v, 1)
        for k, v in metrics.items()
        if k != "connectMs" and isinstance(v, float | int)
    }
    flow = metrics.get("flow")
    print(f"\nStart talking -> session.created ({flow}): {metrics['connectMs']:.0f} ms; {parts}")
    out = ROOT / "artifacts" / "browser-connect.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"connect_ms": metrics["connectMs"], "flow": flow, "parts": parts}))


def test_microphone_denied_says_how_to_allow_it(
    new_context: Callable[..., Any], stack: Any
) -> None:
    context = new_context()
    context.add_init_script("""navigator.mediaDevices.getUserMedia = () =>
        Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));""")
    page = context.new_page()
    sign_in(page, stack, "bob")

    page.get_by_role("button", name="Start talking").click()

    assert "Microphone access was denied" in alert(page)
    assert state(page) == "idle"
    shot(page, "6-microphone-denied")
    context.close()


def test_handshake_failure_is_explained(page: Any, stack: Any) -> None:
    sign_in(page, stack, "carol")
    faults(stack, calls="500")
    try:
        page.get_by_role("button", name="Start talking").click()
        assert "Could not connect to the voice service (it answered 500)" in alert(page)
        assert page.get_by_role("button", name="Try again").is_visible()
        shot(page, "7-handshake-failed")
    finally:
        faults(stack, calls=None)


def test_openai_rate_limit_reaches_the_user_as_busy(page: Any, stack: Any) -> None:
    sign_in(page, stack, "dave")
    faults(stack, client_secrets="429")
    try:
        page.get_by_role("button", name="Start talking").click()
        assert "The voice service is busy right now. Please try again in" in alert(page)
    finally:
        faults(stack, client_secrets=None)


def test_an_expired_sign_in_asks_to_sign_in_again(page: Any, stack: Any) -> None:
    sign_in(page, stack, "erin")
    page.evaluate("""() => { const t = JSON.parse(sessionStorage.getItem('rtv.tokens'));
        t.expires_at = Date.now() - 1000; delete t.refresh_token;
        sessionStorage.setItem('rtv.tokens', JSON.stringify(t)); }""")

    page.get_by_role("button", name="Start talking").click()

    assert "Your sign-in has expired. Please sign in again." in alert(page)
    assert page.locator("#alert-action").inner_text() == "Sign in"
    shot(page, "8-sign-in-expired")


def test_a_revoked_token_is_refused_by_the_api_and_asks_to_sign_in(page: Any, stack: Any) -> None:
    sign_in(page, stack, "frank")
    page.evaluate("""() => { const t = JSON.parse(sessionStorage.getItem('rtv.tokens'));
        t.access_token = t.access_token.slice(0, -4) + 'AAAA';
        sessionStorage.setItem('rtv.tokens', JSON.stringify(t)); }""")

    page.get_by_role("button", name="Start talking").click()

    assert "Your sign-in has expired" in alert(page)


def test_an_exhausted_quota_says_when_to_come_back(new_context: Callable[..., Any]) -> None:
    clear_of_a_minute_boundary(20.0)  # both attempts must fall in one minute window
    with start_stack(quotas="1/minute") as small:
        context = new_context(permissions=["microphone"])
        page = context.new_page()
        sign_in(page, small, "gina")
        page.get_by_role("button", name="Start talking").click()
        wait_state(page, "connected")
        assert page.locator("#quota").inner_text() == "0 this minute"
        page.get_by_role("button", name="Hang up").click()
        wait_state(page, "idle")

        page.get_by_role("button", name="Start talking").click()

        message = alert(page)
        seconds = int(message.split(" in ")[1].split(" ")[0].rstrip("."))
        assert message.startswith("You can start another conversation in") and 1 <= seconds <= 60
        shot(page, "9-quota-exhausted")
        context.close()


def test_keyboard_only_use_reaches_every_control(page: Any, stack: Any) -> None:
    sign_in(page, stack, "hana")
    page.focus("#start")
    page.keyboard.press("Enter")
    wait_state(page, "connected")
    page.focus("#say-text")
    page.keyboard.type("hello")
    page.keyboard.press("Enter")
    page.locator("#transcript li.assistant").filter(has_text="hello").wait_for(timeout=TIMEOUT)
    page.focus("#hang-up")
    page.keyboard.press("Enter")
    wait_state(page, "idle")
    time.sleep(0.1)
