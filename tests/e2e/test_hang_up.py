"""Hang up at every stage of connecting: whatever that stage was waiting for arrives after the
user hung up, and the page must release it, not resume the call. Each stage is held open (a
held network request, or a gate the probe puts in front of a browser API), Hang up is clicked,
the stage is let go, and then: the microphone is off, every peer connection closed, no audio
plays, the page is ready for the next call, and nothing was thrown."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.browser import TIMEOUT, alert, sign_in, wait_state, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.stack]

# Records what the page acquires (microphone streams, peer connections, audio contexts, audio
# playback) and lets the test hold a stage: `__probe.arm(stage)` makes the next call through
# that stage wait until `__probe.release(stage)`. The page itself is not changed.
PROBE = """(() => {
  const probe = { microphones: [], connections: [], contexts: [], plays: 0, gates: {}, reached: [] };
  window.__probe = probe;
  probe.arm = (stage) => {
    let release;
    const promise = new Promise((resolve) => { release = resolve; });
    probe.gates[stage] = { promise, release };
  };
  probe.release = (stage) => { probe.gates[stage]?.release(); delete probe.gates[stage]; };
  const hold = (stage) => {
    if (!probe.gates[stage]) return Promise.resolve();
    probe.reached.push(stage);
    return probe.gates[stage].promise;
  };
  const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    await hold("microphone");  // the permission prompt, still open
    const stream = await getUserMedia(constraints);
    probe.microphones.push(stream);
    return stream;
  };
  const NativePeerConnection = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends NativePeerConnection {
    constructor(...args) { super(...args); probe.connections.push(this); }
    async setLocalDescription(...args) {
      await super.setLocalDescription(...args);
      await hold("ice");  // candidates are being gathered meanwhile
    }
    async setRemoteDescription(...args) {
      await hold("answer");
      return super.setRemoteDescription(...args);
    }
  };
  const NativeAudioContext = window.AudioContext;
  window.AudioContext = class extends NativeAudioContext {
    constructor(...args) { super(...args); probe.contexts.push(this); }
  };
  const play = HTMLMediaElement.prototype.play;
  HTMLMediaElement.prototype.play = function (...args) {
    if (this.srcObject) probe.plays += 1;
    return play.apply(this, args);
  };
})();"""

RELEASED = """() => {
  const p = window.__probe;
  return p.microphones.every((s) => s.getTracks().every((t) => t.readyState === 'ended'))
    && p.connections.every((pc) => pc.signalingState === 'closed' && pc.connectionState === 'closed')
    && p.contexts.every((c) => c.state === 'closed');
}"""

HELD = """() => {
  const p = window.__probe;
  return {
    live_microphone_tracks: p.microphones.flatMap((s) => s.getTracks()).filter((t) => t.readyState !== 'ended').length,
    open_peer_connections: p.connections.filter((pc) => pc.signalingState !== 'closed' || pc.connectionState !== 'closed').length,
    open_audio_contexts: p.contexts.filter((c) => c.state !== 'closed').length,
  };
}"""

AUDIO = """() => { const a = document.getElementById('remote-audio');
  return { playing: Boolean(a.srcObject) && !a.paused, time: a.currentTime, plays: window.__probe.plays }; }"""


@pytest.fixture
def probed(new_context: Callable[..., Any], stack: Any) -> Iterator[tuple[Any, list[str]]]:
    """A page with the probe installed, and the errors it reports (uncaught or logged)."""
    context = new_context(permissions=["microphone"])
    context.add_init_script(PROBE)
    page = context.new_page()
    errors: list[str] = []

    def logged(message: Any) -> None:
        if message.type == "error":
            errors.append(f"console: {message.text}")

    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.on("console", logged)
    yield page, errors
    context.close()


class HeldRequest:
    """A request the browser sent that gets no answer until `release`."""

    def __init__(self, page: Any, pattern: str) -> None:
        self.page = page
        self.route: Any = None
        page.route(pattern, self._hold, times=1)

    def _hold(self, route: Any) -> None:
        self.route = route

    def wait(self) -> None:
        deadline = time.monotonic() + TIMEOUT / 1000
        while self.route is None:  # Playwright calls the handler while the page is waited on
            assert time.monotonic() < deadline, "the request was never sent"
            self.page.wait_for_timeout(20)

    def release(self) -> None:
        # A page that cancelled the request makes this fail: that is the point, not an error.
        with contextlib.suppress(Exception):
            self.route.continue_()


def held_gate(page: Any, stage: str) -> tuple[Callable[[], None], Callable[[], None]]:
    page.evaluate("(stage) => window.__probe.arm(stage)", stage)

    def wait() -> None:
        wait_until(page, f"window.__probe.reached.includes({json.dumps(stage)})", TIMEOUT)

    def release() -> None:
        page.evaluate("(stage) => window.__probe.release(stage)", stage)

    return wait, release


def hold(page: Any, stack: Any, stage: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """Arms `stage`; returns (wait until the page is in it, let it go)."""
    if stage == "token":
        # the page's own origin: CloudFront (here devstack/web.py) serves the API under it
        request = HeldRequest(page, f"{stack.urls['web']}/v1/realtime/client_secrets")
        return request.wait, request.release
    if stage == "sdp":
        request = HeldRequest(page, f"{stack.urls['openai']}/realtime/calls**")
        return request.wait, request.release
    if stage == "connected":
        return (lambda: wait_state(page, "connected")), (lambda: None)
    return held_gate(page, stage)


def open_calls(stack: Any) -> set[str]:
    base = stack.urls["openai"].removesuffix("/v1")
    return {call["id"] for call in httpx.get(f"{base}/__emulator/state").json()["open_calls"]}


def assert_emulator_let_go(stack: Any, before: set[str]) -> None:
    """The calls the page joined since `before` have ended on the emulator's side too. (A call
    the emulator answered but the page never joined, because it hung up first, is the server's
    to end: hangup takes the server key. The emulator drops it when ICE times out.)"""
    deadline = time.monotonic() + 10
    while open_calls(stack) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not open_calls(stack) - before, "the emulator still holds a call the page hung up"


def assert_released_and_ready(page: Any) -> None:
    with contextlib.suppress(TimeoutError):
        wait_until(page, RELEASED, 5_000)
    assert page.evaluate(RELEASED), f"still held after Hang up: {page.evaluate(HELD)}"
    before = page.evaluate(AUDIO)
    page.wait_for_timeout(700)  # long enough for a late answer or track to start the audio
    after = page.evaluate(AUDIO)
    assert not after["playing"], "audio plays after Hang up"
    assert after["plays"] == before["plays"], "the page started the audio again after Hang up"
    assert page.evaluate(RELEASED), "something was acquired again after Hang up"
    assert page.evaluate("document.documentElement.dataset.state") == "idle"
    assert page.locator("#status").inner_text() == "Conversation ended."
    assert page.locator("#alert").is_hidden()
    assert page.get_by_role("button", name="Start talking").is_enabled()
    assert page.get_by_role("button", name="Hang up").is_disabled()
    assert page.locator("#time-left").inner_text() == "\u2013"  # an en dash: no time


# Each stage, and what must exist once it has been let go (so the test cannot pass by never
# reaching the resource it checks).
STAGES = {
    "token": "p.microphones.length === 1",  # the microphone is ready before the token is
    "microphone": "p.microphones.length === 1",
    "ice": "p.connections.length === 1",
    "sdp": "p.connections.length === 1",
    "answer": "p.connections.length === 1",
    "connected": "p.connections.length === 1",
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_hang_up_while_connecting_releases_everything(
    probed: tuple[Any, list[str]], stack: Any, stage: str
) -> None:
    page, errors = probed
    sign_in(page, stack, f"hang-up-{stage}")
    calls_before = open_calls(stack)
    wait, release = hold(page, stack, stage)

    page.get_by_role("button", name="Start talking").click()
    wait()
    page.get_by_role("button", name="Hang up").click()
    release()  # what the stage waited for arrives now, after the user hung up

    wait_until(page, f"() => {{ const p = window.__probe; return {STAGES[stage]}; }}")
    assert_released_and_ready(page)
    assert errors == []
    if stage == "connected":
        assert_emulator_let_go(stack, calls_before)

    # the abandoned attempt does not disturb the next call
    calls_before = open_calls(stack)
    page.get_by_role("button", name="Start talking").click()
    wait_state(page, "connected")
    page.get_by_role("button", name="Hang up").click()
    assert_released_and_ready(page)
    assert errors == []
    assert_emulator_let_go(stack, calls_before)


def test_a_call_the_service_ends_releases_everything_and_says_so(
    probed: tuple[Any, list[str]], stack: Any
) -> None:
    page, errors = probed
    sign_in(page, stack, "dropped")
    before = open_calls(stack)
    page.get_by_role("button", name="Start talking").click()
    wait_state(page, "connected")
    (call_id,) = open_calls(stack) - before

    httpx.post(
        f"{stack.urls['openai']}/realtime/calls/{call_id}/hangup",
        headers={"Authorization": f"Bearer {stack.openai_key}"},
    ).raise_for_status()

    assert "The connection was lost" in alert(page)
    assert page.get_by_role("button", name="Try again").is_visible()
    wait_until(page, RELEASED, 5_000)
    assert not page.evaluate(AUDIO)["playing"]
    assert page.evaluate("document.documentElement.dataset.state") == "idle"
    assert errors == []
