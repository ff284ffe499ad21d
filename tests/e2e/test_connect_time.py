"""Start talking -> session.created for both flows, in one browser against one stack, run
alternately so both meet the same conditions: the server-owned call (one request to our API)
and the client-secret flow (a secret from our API, then the offer to OpenAI). `make bench`
runs this and reports the medians (artifacts/browser-flows.json)."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.stack import Stack, start_stack
from tests.support.browser import TIMEOUT, sign_in, use_flow, wait_state, wait_until
from tests.support.env import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.stack]
FLOWS = ("calls", "client_secrets")
RUNS = int(os.environ.get("CONNECT_RUNS", "9"))  # per flow, after one warm-up each
OUT = ROOT / "artifacts" / "browser-flows.json"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    generous = {"CALL_LIMITS": "concurrent=2,minutes/day=1440"}
    with start_stack(quotas="200/minute,2000/day", extra_env=generous) as running:
        yield running


def connect_once(page: Any, stack: Stack, flow: str) -> dict[str, Any]:
    use_flow(page, flow)
    page.goto(stack.urls["web"] + "/")
    wait_state(page, "idle")
    placing = f"/v1/realtime/{flow}"  # the request only this flow makes
    with page.expect_request(lambda r: r.url.endswith(placing) and r.method == "POST"):
        page.get_by_role("button", name="Start talking").click()
    wait_state(page, "connected")
    wait_until(page, "window.__rtvMetrics.connectMs > 0", TIMEOUT)
    metrics: dict[str, Any] = page.evaluate("window.__rtvMetrics")
    page.get_by_role("button", name="Hang up").click()
    wait_state(page, "idle")
    return metrics


def test_start_talking_to_session_created_in_both_flows(page: Any, stack: Stack) -> None:
    use_flow(page, "client_secrets")  # signed in with the opt-in scope client secrets need
    sign_in(page, stack, "bench")
    runs: dict[str, list[dict[str, Any]]] = {flow: [] for flow in FLOWS}
    for flow in FLOWS:  # warm-up: the function's first call of each route, the page's caches
        connect_once(page, stack, flow)
    for _ in range(RUNS):
        for flow in FLOWS:
            runs[flow].append(connect_once(page, stack, flow))

    summary = {}
    for flow, measured in runs.items():
        parts = sorted({k for m in measured for k, v in m.items() if isinstance(v, int | float)})
        summary[flow] = {
            "runs": len(measured),
            "connect_ms": [round(m["connectMs"], 1) for m in measured],
            "median_ms": round(statistics.median(m["connectMs"] for m in measured), 1),
            "parts_median_ms": {
                k: round(statistics.median(m[k] for m in measured if k in m), 1)
                for k in parts
                if k != "connectMs"
            },
        }
        print(f"\n{flow}: median {summary[flow]['median_ms']} ms {summary[flow]['connect_ms']}")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=1))
    for flow in FLOWS:
        assert all(m > 0 for m in summary[flow]["connect_ms"])
