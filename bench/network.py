"""The browser's connect time under each network profile: click to `session.created`, both
flows, the API on the page's origin and on its own (cross-origin: a CORS preflight), the
function warm and cold.

    python -m bench.network [--runs 9] [--cold-runs 3] [--profiles mobile,...]

One local stack per profile (devstack/network.py: every hop delayed by devstack/delay.py's
proxies, the media path inside the emulator), started as `ApiDoor=execute-api` deploys it so
the API answers at its own origin too. Each run is a user's first click: a fresh browser
context (no connection, no preflight cache), signed in, the page loaded, Start talking
pressed; its figures are the page's own marks (`window.__rtvMetrics`) and the Resource
Timing of its requests. The setups are interleaved run by run so drift hits all alike.
"Cold" runs restart the API's process first: a fresh function (its key set, its secret, its
first connections to AWS and OpenAI, each paying the hop's handshakes), without the import,
which section 1 of the report measures. Writes artifacts/browser-network.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devstack.network import PROFILES

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "artifacts" / "browser-network.json"
FLOWS = ("calls", "client_secrets")
ORIGINS = ("same", "cross")
PARTS = ("tokenMs", "offerMs", "readyMs", "sdpMs", "iceDtlsMs", "channelMs", "apiMs", "openaiMs")


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value with `share` of the values at or below."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


def summarize(runs: list[dict[str, float]]) -> dict[str, Any]:
    connect = [r["connectMs"] for r in runs]
    return {
        "runs": len(runs),
        "connect_ms": [round(c, 1) for c in connect],
        "median_ms": round(statistics.median(connect), 1),
        "p90_ms": round(percentile(connect, 0.9), 1),
        "parts_median_ms": {
            part: round(statistics.median(r[part] for r in runs if part in r), 1)
            for part in PARTS
            if any(part in r for r in runs)
        },
    }


@contextmanager
def profile_stack(profile: str | None, extra_env: dict[str, str] | None = None) -> Iterator[Any]:
    from devstack.stack import start_stack

    generous = {
        "CALL_LIMITS": "concurrent=10,minutes/day=1440",
        "SPEND_LIMITS": "usd/day=1000",
    } | (extra_env or {})
    with start_stack(
        quotas="1000/minute,20000/day",
        extra_env=generous,
        api_door="execute-api",  # the API's own origin open, for the cross-origin setup
        network=profile,
    ) as stack:
        yield stack


def first_click(browser: Any, stack: Any, flow: str, origin: str, user: str) -> dict[str, float]:
    """A fresh context signs in, loads the page and connects once; the page's marks."""
    from tests.support.browser import TIMEOUT, sign_in, wait_state, wait_until

    api = stack.urls["web"] if origin == "same" else stack.urls["api"]
    # The production CSP names only the page's origin as the API's: the cross-origin setup
    # is what `ApiDoor=execute-api` served before, measured here without that policy.
    context = browser.new_context(bypass_csp=origin == "cross")
    try:
        page = context.new_page()

        def config(route: Any) -> None:
            answer = route.fetch()
            document = answer.json() | {"flow": flow, "apiBaseUrl": api}
            if flow == "client_secrets":  # the shipped client-secret profile's opt-in scope
                document["scopes"] += " realtime:client_secrets"
            route.fulfill(response=answer, body=json.dumps(document))

        page.route("**/config.json", config)
        sign_in(page, stack, user)
        wait_state(page, "idle")
        page.get_by_role("button", name="Start talking").click()
        wait_state(page, "connected")
        wait_until(page, "window.__rtvMetrics.connectMs > 0", TIMEOUT)
        marks: dict[str, float] = page.evaluate("({...window.__rtvMetrics})")
        # What the page's requests took, by their Resource Timing: our API's (the mint, or
        # the call's placing) and OpenAI's (the client-secret flow's SDP POST).
        marks |= page.evaluate(
            r"""(openai) => {
              const found = {};
              for (const e of performance.getEntriesByType('resource')) {
                if (/\/v1\/realtime\/(client_secrets|calls)$/.test(new URL(e.name).pathname))
                  found[e.name.startsWith(openai) ? 'openaiMs' : 'apiMs'] = e.duration;
              }
              return found;
            }""",
            stack.function_urls["openai"],
        )
        if flow == "calls":
            with page.expect_response(lambda r: r.url.endswith("/hangup"), timeout=TIMEOUT):
                page.get_by_role("button", name="Hang up").click()
        else:
            page.get_by_role("button", name="Hang up").click()
        wait_state(page, "idle")
        return {k: float(v) for k, v in marks.items() if isinstance(v, int | float)}
    finally:
        context.close()


def live_connects(stack: Any, sessions: int) -> list[dict[str, float]]:
    """GPT-Live's connect through our API under the profile: an aiortc caller's (bench/
    live_cost.py), in a thread of its own (Playwright's sync API holds this one's loop)."""
    from bench import live_cost

    found: list[dict[str, float]] = []

    def run() -> None:
        found.extend(asyncio.run(live_cost.connect_times(stack, sessions)))

    worker = threading.Thread(target=run, name="live-connects")
    worker.start()
    worker.join()
    return [{"connectMs": t["started_ms"], "apiMs": t["api_ms"]} for t in found]


def measure_profile(
    browser: Any,
    profile: str,
    runs: int,
    cold_runs: int,
    live_sessions: int = 0,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    measured: dict[str, list[dict[str, float]]] = {}
    started = time.monotonic()
    with profile_stack(profile, extra_env) as stack:
        setups = [(flow, origin) for flow in FLOWS for origin in ORIGINS]
        for flow, origin in setups:  # warm-up: each route's first request, the page's caches
            first_click(browser, stack, flow, origin, "bench-warmup")
        for n in range(runs):
            for flow, origin in setups:
                key = f"{flow}/{origin}/warm"
                measured.setdefault(key, []).append(
                    first_click(browser, stack, flow, origin, f"bench-{n}")
                )
        for n in range(cold_runs):
            for flow in FLOWS:
                stack.restart("api")  # a fresh function: its state and its connections
                key = f"{flow}/same/cold"
                measured.setdefault(key, []).append(
                    first_click(browser, stack, flow, "same", f"bench-cold-{n}")
                )
        if live_sessions:
            live = live_connects(stack, live_sessions)
            if live:
                measured["live/same/warm"] = live
        description = stack.network.describe() if stack.network else "loopback"
    print(f"  {profile}: {time.monotonic() - started:.0f} s", flush=True)
    return {
        "links": description,
        "setups": {key: summarize(values) for key, values in measured.items()},
    }


def measure(
    profiles: list[str],
    runs: int,
    cold_runs: int,
    out: Path = OUT,
    live_sessions: int = 5,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from tests.support.browser import CHROMIUM_ARGS, chromium_path

    results: dict[str, Any] = {
        "runs": runs,
        "cold_runs": cold_runs,
        "load_average": [os.getloadavg()[0]],
        "extra_env": extra_env or {},
        "profiles": {},
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            for profile in profiles:
                print(f"browser connect time under the {profile} profile ...", flush=True)
                results["profiles"][profile] = measure_profile(
                    browser, profile, runs, cold_runs, live_sessions, extra_env
                )
        finally:
            browser.close()
    results["load_average"].append(os.getloadavg()[0])
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return results


SECTION = "## 10. Under a network: connect time per profile"
SETUPS = {
    "calls/same/warm": "server-owned call, page's origin",
    "calls/cross/warm": "server-owned call, API's own origin",
    "client_secrets/same/warm": "client secret, page's origin",
    "client_secrets/cross/warm": "client secret, API's own origin",
    "calls/same/cold": "server-owned call, page's origin, cold function",
    "client_secrets/same/cold": "client secret, page's origin, cold function",
    "live/same/warm": "GPT-Live session (an aiortc caller, not the page; our API only)",
}
COLUMNS = {
    "tokenMs": "token / secret",
    "offerMs": "offer",
    "readyMs": "offer sent at",
    "apiMs": "our API",
    "openaiMs": "OpenAI (SDP)",
    "iceDtlsMs": "ICE+DTLS",
    "channelMs": "SCTP+event",
}


def render(results: dict[str, Any] | None) -> list[str]:
    """The section of docs/performance.md: a table per profile, and what its numbers say."""
    if not results or not results.get("profiles"):
        return []
    load = results.get("load_average") or []
    lines = [
        SECTION,
        "",
        "Headless Chromium against the local stack with a network profile's delays on every",
        "hop (`make bench-network`, `python -m bench.network`; the profiles, the mechanism and",
        "the figures' sources: [local.md](local.md#network-profiles)). Each run is a user's",
        "first click: a fresh browser context signs in, loads the page and presses Start",
        f"talking; {results['runs']} runs per setup, interleaved, after a warm-up, and",
        f"{results['cold_runs']} per flow with the API's process restarted just before (cold:",
        "its key set, secret and first connections to AWS and OpenAI; the import is section",
        "1's). Click to `session.created`, median and p90 (nearest rank); the parts are",
        "medians of the page's own marks and of its requests' Resource Timing (our API: the",
        "mint, or the call's placing, a preflight included; OpenAI: the client secret's SDP",
        "POST). *Offer sent at* is when both the offer and the token or secret were ready.",
        "*Separate* means every run of one setup beat the other's median, or every run of the",
        "other lost to the first one's median. GPT-Live's row: an aiortc caller's offer posted",
        "to `POST /v1/live/sessions` until `session.started` (bench/live_cost.py), media",
        "delayed like the page's.",
    ]
    if results.get("extra_env"):
        settings = ", ".join(f"`{k}={v}`" for k, v in results["extra_env"].items())
        lines.append(f"The functions ran with {settings}.")
    if len(load) == 2:
        lines.append(f"One-minute load average {load[0]:.1f} before, {load[1]:.1f} after.")
    for name, found in results["profiles"].items():
        setups = found["setups"]
        lines += ["", f"### {name}", "", f"{found['links']}.", ""]
        lines.append("| setup | median ms | p90 ms | " + " | ".join(COLUMNS.values()) + " |")
        lines.append("|---" * (3 + len(COLUMNS)) + "|")
        for key, label in SETUPS.items():
            if key not in setups:
                continue
            s = setups[key]
            parts = [_whole(s["parts_median_ms"].get(part)) for part in COLUMNS]
            lines.append(
                f"| {label} | **{s['median_ms']:.0f}** | {s['p90_ms']:.0f} | "
                + " | ".join(parts)
                + " |"
            )
        lines += ["", *verdicts(setups)]
    return [*lines, ""]


def _whole(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.0f}"


def compare(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, bool]:
    """How much later b's median is than a's, and whether the two sets of runs are separate
    (every run of one faster than the median of the other, both ways)."""
    difference = b["median_ms"] - a["median_ms"]
    fast, slow = (a, b) if difference >= 0 else (b, a)
    separate = (
        max(fast["connect_ms"]) < slow["median_ms"] or min(slow["connect_ms"]) > (fast["median_ms"])
    )
    return difference, separate


def verdicts(setups: dict[str, Any]) -> list[str]:
    """What this profile's numbers say, computed from them: the flows, then the origins."""
    said = []
    calls, secrets = setups.get("calls/same/warm"), setups.get("client_secrets/same/warm")
    if calls and secrets:
        difference, separate = compare(calls, secrets)
        faster = "faster" if difference > 0 else "slower"
        said.append(
            f"- The server-owned call is {abs(difference):.0f} ms {faster} than the client "
            f"secret at the median ({calls['median_ms']:.0f} vs {secrets['median_ms']:.0f} ms)"
            + ("; the runs separate." if separate else "; the runs overlap: not separated.")
        )
    for flow, label in (("calls", "server-owned call"), ("client_secrets", "client secret")):
        same, cross = setups.get(f"{flow}/same/warm"), setups.get(f"{flow}/cross/warm")
        if same and cross:
            difference, separate = compare(same, cross)
            said.append(
                f"- {label.capitalize()}: the API's own origin costs {difference:.0f} ms at the "
                f"median against the page's ({cross['median_ms']:.0f} vs "
                f"{same['median_ms']:.0f} ms)"
                + ("; the runs separate." if separate else "; the runs overlap.")
            )
        warm, cold = same, setups.get(f"{flow}/same/cold")
        if warm and cold:
            said.append(
                f"- {label.capitalize()}: a cold function adds "
                f"{cold['median_ms'] - warm['median_ms']:.0f} ms at the median "
                f"({cold['runs']} runs)."
            )
    return said


def replace_section(document: str, section: list[str]) -> str:
    """`document` with this section in place of its old one (or at its end)."""
    text = "\n".join(section).rstrip("\n") + "\n"
    start = document.find(SECTION)
    if start < 0:
        return document.rstrip("\n") + "\n\n" + text
    following = document.find("\n## ", start + len(SECTION))
    rest = "" if following < 0 else document[following:]
    return document[:start] + text + rest


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.network", description=__doc__)
    parser.add_argument("--runs", type=int, default=9, help="warm runs per setup and profile")
    parser.add_argument("--cold-runs", type=int, default=3, help="cold runs per flow")
    parser.add_argument("--profiles", default=",".join(PROFILES), help="comma separated")
    parser.add_argument("--live", type=int, default=5, help="GPT-Live sessions per profile")
    parser.add_argument(
        "--extra-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="for both functions, e.g. WATCHER_ANSWER_WAIT_SECONDS=0 (what the wait costs)",
    )
    parser.add_argument(
        "--update", type=Path, help="put the section into this document (docs/performance.md)"
    )
    args = parser.parse_args()
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    extra = dict(item.split("=", 1) for item in args.extra_env)
    results = measure(profiles, args.runs, args.cold_runs, OUT, args.live, extra)
    if args.update:
        args.update.write_text(replace_section(args.update.read_text(), render(results)))
        print(f"wrote {args.update}")
    for profile, found in results["profiles"].items():
        for key, s in found["setups"].items():
            print(f"{profile:>16} {key:<26} median {s['median_ms']:>7} p90 {s['p90_ms']:>7} ms")


if __name__ == "__main__":
    main()
