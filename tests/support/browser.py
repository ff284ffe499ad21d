"""The browser tests' helpers: Debian's Chromium, and the page driven as a user would, read
as the tests read it (its state, its alert, the calls the API knows of)."""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

import httpx

from tests.support.env import ROOT

SHOTS = ROOT / "artifacts" / "screenshots"
TIMEOUT = 15_000  # ms: what a page may take to get where a test waits for it
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    # Closed network: without these, Chromium keeps dialling Google's hosts at every start.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--no-sandbox",
]


# Every CSP violation a document of the page sees, reported to the test. The console alone
# misses some: an `eval` the page's code refuses and catches (zod's probe for `new Function`,
# inside OpenAI's SDKs) logs nothing there, yet a deployment's CSP reports still count it.
CSP_LISTENER = """
document.addEventListener('securitypolicyviolation', (event) => {
  window.__cspViolation(`${event.effectiveDirective} refused ${event.blockedURI || 'inline'}`
    + ` (${event.sourceFile || 'the page'}:${event.lineNumber})`);
}, true);
"""


def watch_csp(context: Any, refusals: list[str]) -> None:
    """Collects into `refusals` what any page of `context` was refused under its CSP: every
    `securitypolicyviolation` event, and any console message that names the policy."""
    context.expose_binding(
        "__cspViolation", lambda _source, text: refusals.append(f"securitypolicyviolation: {text}")
    )
    context.add_init_script(CSP_LISTENER)
    context.on(
        "console",
        lambda m: refusals.append(m.text) if "Content Security Policy" in m.text else None,
    )


def settle(context: Any) -> None:
    """Lets every open page of `context` run what it queued (a violation event is a task of
    its own) and deliver it, before the test's refusals are read."""
    for page in context.pages:
        if not page.is_closed():
            page.evaluate("new Promise((resolve) => setTimeout(resolve, 0))")


def chromium_path() -> str | None:
    return (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )


def wait_until(page: Any, expression: str, timeout_ms: int = TIMEOUT) -> Any:
    """Polls a JavaScript expression until it is truthy.

    Playwright's wait_for_function re-runs its predicate through eval(), which the page's
    production CSP (script-src 'self', no 'unsafe-eval') refuses; `evaluate` goes through the
    DevTools protocol, which CSP does not govern.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout_ms} ms: {expression}")
        page.wait_for_timeout(50)


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def use_flow(page: Any, flow: str) -> None:
    """The page reads its flow from config.json, as a deployment would set it."""

    def rewrite(route: Any) -> None:
        response = route.fetch()
        config = response.json() | {"flow": flow}
        if flow == "client_secrets":  # the shipped client-secret profile is opt-in, by scope
            config["scopes"] += " realtime:client_secrets"
        route.fulfill(response=response, body=json.dumps(config))

    page.unroute("**/config.json")
    page.route("**/config.json", rewrite)


def live_calls(stack: Any, user: str) -> dict[str, Any]:
    """What `GET /v1/realtime/calls` tells `user`."""
    answer = httpx.get(
        stack.urls["web"] + "/v1/realtime/calls",
        headers={"Authorization": f"Bearer {stack.token(user)}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def start_call(page: Any) -> dict[str, Any]:
    """Start talking on a page that places server-owned calls; the call's id and terms, read
    from the API's answer to the page, and the moments (epoch seconds) around what the page did
    with them: the click, and the page connected."""
    clicked_at = time.time()
    with page.expect_response(
        lambda r: r.url.endswith("/v1/realtime/calls") and r.request.method == "POST"
    ) as placed:
        page.get_by_role("button", name="Start talking").click()
    response = placed.value
    assert response.status == 201, response.text()
    wait_until(page, "document.documentElement.dataset.state === 'connected'")
    return {
        "id": response.headers["location"].rsplit("/", 1)[-1],
        "ends_at": int(response.headers["call-ends-at"]),
        "minutes_left": int(response.headers["call-minutes-left"]),
        "clicked_at": clicked_at,
        "connected_at": time.time(),
    }


def sign_in(page: Any, stack: Any, user: str = "alice") -> None:
    page.goto(stack.urls["web"] + "/")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{stack.urls['issuer']}/authorize**")
    page.fill("#username", user)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(stack.urls["web"] + "/**")
    page.get_by_text(f"Signed in as {user}").wait_for(timeout=TIMEOUT)


def wait_state(page: Any, wanted: str) -> None:
    wait_until(page, f"document.documentElement.dataset.state === '{wanted}'", TIMEOUT)


def alert(page: Any) -> str:
    page.locator("#alert").wait_for(state="visible", timeout=TIMEOUT)
    return page.locator("#alert-text").inner_text()


# A test script in the page: keeps the `oai-events` channel the page opens, so the test can
# send what a curious user could send from the console.
KEEP_CHANNEL = """
(() => {
  const create = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = create.apply(this, args);
    window.__oaiEvents = channel;
    window.__updates = [];
    channel.addEventListener('message', (message) => {
      const event = JSON.parse(message.data);
      if (event.type === 'session.updated') {
        window.__updates.push({at: performance.now(), instructions: event.session.instructions});
      }
    });
    return channel;
  };
})();
"""


def hangup_reasons_after_a_drop(ended_by: str) -> set[str]:
    """What the API may answer the page's hangup after the page's peer closed, given what ended
    the call upstream (the emulator's `ended_by`). The emulator usually notices the closed peer
    first (`peer`); the answer says the line closed (`closed`) once the watcher has recorded it,
    and a hangup that reaches the API before that (a loaded machine) is answered as the hangup
    it is. Should the page's hangup be what ended the call, the answer says exactly that. Never
    a server cause (deadline, budget)."""
    return {"hangup": {"hangup"}, "peer": {"closed", "hangup"}}[ended_by]
