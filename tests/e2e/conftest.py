"""Browser fixtures: Debian's Chromium driven by Playwright, against the local stack."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.stack import start_stack
from tests.support.browser import CHROMIUM_ARGS, chromium_path, settle, watch_csp


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
def csp_refusals() -> Iterator[list[str]]:
    """What the browser refused under a page's CSP, in every context the test opened (`page`,
    `new_context`); a test that provokes a refusal on purpose takes it out of this list.
    Anything left fails the test, so a CSP that breaks a page cannot pass."""
    refusals: list[str] = []
    yield refusals
    assert not refusals, f"a page broke its own CSP: {refusals}"


@pytest.fixture
def new_context(browser: Any, csp_refusals: list[str]) -> Iterator[Callable[..., Any]]:
    """Opens a browser context (Playwright's options) whose pages' CSP refusals fail the test;
    every browser test opens its contexts through here (or `page`)."""
    opened: list[Any] = []

    def open_context(**options: Any) -> Any:
        context = browser.new_context(**options)
        watch_csp(context, csp_refusals)
        opened.append(context)
        return context

    yield open_context
    for context in opened:
        settle(context)
        context.close()


@pytest.fixture
def init_scripts() -> list[str]:
    """Test scripts run in the page before its own (a module overrides this fixture)."""
    return []


@pytest.fixture
def page(new_context: Callable[..., Any], stack: Any, init_scripts: list[str]) -> Any:
    """A tab on the stack's page. The page runs under the production CSP (devstack/web.py);
    anything it refuses fails the test (`csp_refusals`)."""
    context = new_context(permissions=["microphone"])
    for script in init_scripts:
        context.add_init_script(script)
    return context.new_page()
