"""What one origin saves on the first click: the CORS preflight's round trip.

The page's first mint, from a fresh browser context (no preflight cache), two ways against
the same local stack: through the page's own origin (as deployed now) and straight to the
API's own origin (as before: a cross-origin POST with an Authorization header needs an
OPTIONS first). What is asserted is the count, as DevTools sees the requests: one request
instead of two in sequence. The time is recorded, not asserted: loopback has no latency
worth measuring, and Chromium's network emulation (which adds an RTT to each request) was
seen to apply to the preflight in some runs and not others. In production the saving is one
browser-to-API round trip. Writes artifacts/browser-preflight.json for `make bench`.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.stack import start_stack
from tests.support.env import ROOT, SECRETS_SCOPES

pytestmark = [pytest.mark.browser, pytest.mark.stack]


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    """The cross-origin way needs an API that answers at its own origin: the stack as
    `ApiDoor=execute-api` deploys it (behind the distribution, that origin refuses all)."""
    with start_stack(quotas="20/minute,200/day", api_door="execute-api") as running:
        yield running


RTT_MS = 50
ROUNDS = 5
MINT = """async ([base, token]) => {
  const started = performance.now();
  const r = await fetch(base + '/v1/realtime/client_secrets', {method: 'POST',
    headers: {Authorization: 'Bearer ' + token, 'Content-Type': 'application/json'}, body: '{}'});
  await r.json();
  return [r.status, performance.now() - started];
}"""


def first_mint(browser: Any, stack: Any, base: str, user: str) -> tuple[float, list[str]]:
    # The cross-origin way is refused by the production CSP (that is the point of the
    # change), so only this measurement's own context bypasses it.
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.goto(stack.urls["web"] + "/")
    cdp = context.new_cdp_session(page)
    methods: list[str] = []  # as DevTools sees them: preflights included
    cdp.on(
        "Network.requestWillBeSent",
        lambda e: methods.append(e["request"]["method"]) if "/v1/" in e["request"]["url"] else None,
    )
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": RTT_MS, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    # The shipped client-secret profile is opt-in: the token carries its scope.
    status, elapsed = page.evaluate(MINT, [base, stack.token(user, SECRETS_SCOPES)])
    context.close()
    assert status == 200
    return elapsed, methods


def test_one_origin_saves_the_preflight_round_trip_on_the_first_click(
    browser: Any, stack: Any
) -> None:
    same, cross = [], []
    for n in range(ROUNDS):
        elapsed, methods = first_mint(browser, stack, stack.urls["web"], f"pre-same-{n}")
        assert methods == ["POST"]
        same.append(elapsed)
        elapsed, methods = first_mint(browser, stack, stack.urls["api"], f"pre-cross-{n}")
        assert sorted(methods) == ["OPTIONS", "POST"], methods  # the mint needed a preflight
        cross.append(elapsed)

    result = {
        "rtt_ms": RTT_MS,
        "rounds": ROUNDS,
        "same_origin_ms": round(statistics.median(same), 1),
        "cross_origin_ms": round(statistics.median(cross), 1),
        "same_origin_requests": 1,
        "cross_origin_requests": 2,
    }
    result["saved_ms"] = round(result["cross_origin_ms"] - result["same_origin_ms"], 1)
    print(f"\nfirst mint at {RTT_MS} ms RTT: {result}")
    out = ROOT / "artifacts" / "browser-preflight.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result))
