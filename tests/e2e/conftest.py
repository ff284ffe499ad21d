"""Browser fixtures: Debian's Chromium driven by Playwright, against the local stack."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import start_stack

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
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


def chromium_path() -> str | None:
    return (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )


# Module scope: Playwright's sync API keeps an event loop running in this thread while it
# lives, which other suites' asyncio code must not meet.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if not path:
        message = "Debian's chromium is not installed (apt-get install chromium); set CHROMIUM to its path"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # in CI a missing browser is a failure, never a skip
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    # These suites drive the client-secret flow (their held stages are its requests); the
    # server-owned flow, the page's default, has its own stacks (test_calls, test_connect_time).
    flow = os.environ.get("E2E_FLOW", "client_secrets")
    with start_stack(quotas="20/minute,200/day", web_flow=flow) as running:
        yield running


@pytest.fixture
def csp_refusals() -> list[str]:
    """What the browser refused under the page's CSP; a test that provokes a refusal on
    purpose takes it out of this list."""
    return []


@pytest.fixture
def init_scripts() -> list[str]:
    """Test scripts run in the page before its own (a module overrides this fixture)."""
    return []


@pytest.fixture
def page(
    browser: Any, stack: Any, csp_refusals: list[str], init_scripts: list[str]
) -> Iterator[Any]:
    """A tab on the stack's page. The page runs under the production CSP (devstack/web.py);
    anything it refuses fails the test, so a CSP that breaks the page cannot pass."""
    context = browser.new_context(permissions=["microphone"])
    for script in init_scripts:
        context.add_init_script(script)
    page = context.new_page()
    page.on(
        "console",
        lambda m: csp_refusals.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield page
    context.close()
    assert not csp_refusals, f"the page broke its own CSP: {csp_refusals}"


def wait_until(page: Any, expression: str, timeout_ms: int = 15_000) -> Any:
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
        route.fulfill(response=response, body=json.dumps(config))

    page.unroute("**/config.json")
    page.route("**/config.json", rewrite)


def live_calls(stack: Any, user: str) -> dict[str, Any]:
    """What `GET /v1/realtime/calls` tells `user`."""
    answer = httpx.get(
        stack.urls["api"] + "/v1/realtime/calls",
        headers={"Authorization": f"Bearer {stack.token(user)}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def start_call(page: Any) -> dict[str, Any]:
    """Start talking on a page that places server-owned calls; the call's id and terms, read
    from the API's answer to the page."""
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
    }
