"""Turns the measured figures into docs/performance.md, with the cost worked from prices."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench import watcher_cost

# Public list prices, us-east-1, as published in 2026 (check before relying on them).
PRICES = {
    "http_api_per_million": 1.00,  # API Gateway HTTP API, first 300 M requests/month
    "lambda_requests_per_million": 0.20,
    "lambda_arm_gb_second": 0.0000133334,
    "dynamodb_write_units_per_million": 0.625,  # on-demand; a refused conditional write costs too
    "secrets_per_10k_calls": 0.05,
    "logs_per_gb": 0.50,  # CloudWatch Logs ingestion
}
COLD_TARGET = 1.3
WARM_TARGET = 3.0


def read_browser_measurement(artifacts: Path) -> dict[str, Any] | None:
    path = artifacts / "browser-connect.json"
    if not path.exists():
        return None
    measured: dict[str, Any] = json.loads(path.read_text())
    preflight = artifacts / "browser-preflight.json"  # tests/e2e/test_preflight_cost.py
    if preflight.exists():
        measured["preflight"] = json.loads(preflight.read_text())
    return measured


def read_load_measurement(artifacts: Path) -> dict[str, Any] | None:
    path = artifacts / "stack-load.json"
    return json.loads(path.read_text()) if path.exists() else None


def read_sam_local_measurement(artifacts: Path) -> dict[str, Any] | None:
    path = artifacts / "sam-local-timings.json"
    return json.loads(path.read_text()) if path.exists() else None


def cost_per_million(memory_mb: int, duration_ms: float, log_bytes: int = 1200) -> dict[str, float]:
    gb_seconds = 1_000_000 * duration_ms / 1000 * memory_mb / 1024
    items = {
        "API Gateway HTTP API": PRICES["http_api_per_million"],
        "Lambda requests": PRICES["lambda_requests_per_million"],
        f"Lambda duration ({memory_mb} MB arm64, {duration_ms:.0f} ms)": gb_seconds
        * PRICES["lambda_arm_gb_second"],
        "DynamoDB writes (1 WRU each)": PRICES["dynamodb_write_units_per_million"],
        # One read per container per 5 minutes: ~10 warm containers all month is ~86k calls.
        "Secrets Manager reads (cached 5 min)": 86_400
        / 10_000
        * PRICES["secrets_per_10k_calls"]
        / 30,
        f"CloudWatch Logs (~{log_bytes} B per mint)": 1_000_000
        * log_bytes
        / 1e9
        * PRICES["logs_per_gb"],
    }
    items["total"] = sum(items.values())
    return items


def _ms(summary: dict[str, float]) -> str:
    return f"{summary['median']:.0f} ms (p99 {summary['p99']:.0f}, n={summary['n']})"


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


# A paragraph that explains rather than measures starts with this, so a reader can tell them apart.
NOT_MEASURED = "*Explanation, not a measurement of this run:*"


def steps(spans: list[tuple[str, float, float]] | list[list[Any]]) -> list[list[str]]:
    """Requests (name, start, end) as steps of wall time: a request's step is one more than
    the latest step among the requests that had ended when it started. Requests sent together
    share a step; the number of steps is the round trips on the critical path."""
    ordered = sorted(((str(n), float(a), float(b)) for n, a, b in spans), key=lambda x: x[1])
    step: list[int] = []
    for i, (_, started, _) in enumerate(ordered):
        before = [step[j] for j in range(i) if ordered[j][2] <= started]
        step.append(1 + max(before, default=0))
    out: list[list[str]] = [[] for _ in range(max(step, default=0))]
    for (name, _, _), k in zip(ordered, step, strict=True):
        out[k - 1].append(name)
    return [sorted(names) for names in out]


def render(r: dict[str, Any]) -> str:
    return "\n".join(
        _intro(r) + _cold(r) + _warm(r["warm"]) + _round_trips(r["cold"]["round_trips"])
        + _call_setup(r.get("call_setup"))
        + (_flows(r["browser_flows"]) + _preflight(r.get("browser")) if r.get("browser_flows")
           else _browser(r.get("browser")))
        + _load(r.get("load")) + _cost(r["cold"])
        + _sam_local(r.get("sam_local"), r["cold"])
        + watcher_cost.render(r.get("watcher"))
    ) + "\n"  # fmt: skip


def _intro(r: dict[str, Any]) -> list[str]:
    return [
        "# Performance",
        "",
        f"Measured by `make bench` on {r['machine']}, Python {r['python']} (the Lambda runtime's",
        "version), in a virtual environment holding only the function's runtime dependencies and",
        "boto3. Each figure sits next to its reference, measured in the same run. The machine is",
        "shared with other work, so medians matter more than any single run. A conclusion is",
        "printed only when this run's numbers support it; paragraphs marked as explanations are",
        "not measurements. How the figures are taken: `bench/README.md`.",
        "",
        *_load_average(r.get("load_average")),
    ]


def _load_average(load: list[float] | None) -> list[str]:
    if not load:
        return []
    before, after = load
    return [
        f"The machine's one-minute load average was {before:.1f} when the run started and"
        f" {after:.1f} when it ended (measured).",
        "",
    ]


def _cold(r: dict[str, Any]) -> list[str]:
    cold, package, choices = r["cold"], r["package"], r.get("choices", {})
    ratio = cold["ratio"]
    lines = [
        "## 1. Cold start",
        "",
        "Fresh process; import the handler module and serve the first request against loopback",
        "fakes of DynamoDB, Secrets Manager, the key set and OpenAI (real clients, real sockets,",
        "no service latency), versus a bare `import boto3` in the same environment.",
        "",
        "| | median (p99) |",
        "|---|---|",
        f"| `import boto3` (the floor) | {_ms(cold['floor'])} |",
        f"| handler import | {_ms(cold['import'])} |",
        f"| handler import + first response | {_ms(cold['handler'])} |",
        f"| second (warm) response, wall | {_ms(cold['warm_wall'])} |",
        "",
        f"Ratio first response / floor: **{ratio:.2f}x** "
        f"(target {COLD_TARGET}x: {_met(ratio <= COLD_TARGET)}).",
        "",
        "What the handler imports beyond `import boto3` (self time, by top-level package):",
        "",
        "| package | ms |",
        "|---|---|",
        *[f"| {name} | {ms:.1f} |" for name, ms in r["imports"]],
        "",
        f"Package size: {package['bytes'] / 1e6:.1f} MB unzipped ({package['source']}); largest:",
        ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in package["largest"]) + ".",
        "",
        "### The import choices behind the design, measured in this run",
        "",
        "| choice | import ms (median) |",
        "|---|---|",
        *[f"| {name} | {ms:.0f} |" for name, ms in choices.items()],
        "",
        "What the code does about cold starts (facts about the code, not measurements):",
        "",
        "- botocore clients instead of boto3's: the function never imports boto3 (s3transfer and",
        "  the resource layer come with it).",
        "- a small router instead of Powertools' event handler (two routes).",
        "- the build ships unchecked-hash bytecode (`scripts/template_checks.sh`): Lambda's",
        "  `/var/task` is read-only, so without it our modules compile from source at every start.",
        "- nothing touches the network at import; clients are built once per container.",
        "",
    ]
    source = choices.get("handler import, sources compiled at every start")
    built = choices.get("handler import, built package with unchecked-hash .pyc")
    if source is not None and built is not None:
        if source > built:
            lines.append(
                f"Shipping bytecode saved {source - built:.0f} ms of handler import in this run "
                f"({source:.0f} ms from source, {built:.0f} ms with .pyc)."
            )
        else:
            lines.append(
                f"In this run the built package imported no faster than the sources "
                f"({built:.0f} ms with .pyc, {source:.0f} ms from source): no saving measured."
            )
        lines.append("")
    if ratio > COLD_TARGET:
        lines += [
            f"{NOT_MEASURED} why the target is not met. The rest of the first response is the",
            "libraries the function must use: a profile of the first request (taken by hand when",
            "this text was written, not in this run) showed botocore creating its",
            "two clients (loading the JSON service models and endpoint rules), httpx building its",
            "client (httpcore, and certifi's CA bundle loaded into a TLS context), and",
            "cryptography's import (PyJWT's RSA). The remedy on AWS is SnapStart: the function",
            "registers hooks that build every client before the snapshot (no network) and forget",
            "cached secrets after restore (`app.py`, tested by `tests/unit/test_snapstart.py`).",
            "",
        ]
    return lines


def _warm(warm: dict[str, Any]) -> list[str]:
    ratio, reference = warm["ratio"], warm["reference_us"]
    parts: dict[str, float] = warm.get("parts", {})
    lines = [
        "## 2. Warm overhead",
        "",
        "CPU time per warm request through the real handler, the network answered in-process with",
        "zero latency (botocore builds and signs each request for real; httpx goes through a",
        "MockTransport), versus the work no implementation can skip, measured in the same process.",
        "",
        "| | CPU per request |",
        "|---|---|",
        f"| one RS256 signature check | {warm['verify_us']:.0f} us |",
        f"| SigV4 signing of one DynamoDB request | {warm['sign_us']:.0f} us |",
        f"| **reference (their sum)** | {reference:.0f} us |",
        f"| **our warm request** | {warm['request_us']:.0f} us |",
        "",
        f"Ratio: **{ratio:.1f}x** (target {WARM_TARGET}x: {_met(ratio <= WARM_TARGET)}; "
        f"median of {warm['runs']} runs).",
        "",
        "Where a warm request's CPU goes, each adapter timed alone through the same clients:",
        "",
        "| part | CPU per call |",
        "|---|---|",
        *[f"| {name} | {us:.0f} us |" for name, us in parts.items()],
        "",
    ]
    if ratio > WARM_TARGET and parts:
        name, us = max(parts.items(), key=lambda item: item[1])
        budget = WARM_TARGET * reference
        lines.append(
            f"The largest part, {name}, costs {us:.0f} us alone: {us / reference:.1f}x the whole "
            "reference."
        )
        if us > budget:
            lines.append(
                f"That is more than the target allows for the whole request ({budget:.0f} us): "
                "in this run the target cannot be met while that client stays."
            )
        lines += [
            "",
            f"{NOT_MEASURED} botocore serialises, validates, rebuilds its user agent and emits a",
            "dozen events per call. Replacing it with hand-signed requests was considered and not",
            "done: it would trade a maintained client (and its retry modes) for our own code, for",
            "a few hundred microseconds of a request that waits far longer on OpenAI.",
            "",
        ]
    return lines


def _round_trips(trips: dict[str, dict[str, float]]) -> list[str]:
    cold, warm = trips["cold"], trips["warm"]
    names = sorted(set(cold) | set(warm))
    lines = [
        "## 3. Round trips",
        "",
        "Counted at the fakes in each fresh process, the first (cold) request apart from the",
        "second (warm) one; averaged over the processes:",
        "",
        "| service | cold request | warm request |",
        "|---|---|---|",
        *[f"| {n} | {cold.get(n, 0):g} | {warm.get(n, 0):g} |" for n in names],
        "",
    ]
    cold_total, warm_total = float(sum(cold.values())), float(sum(warm.values()))
    if cold_total.is_integer() and warm_total.is_integer():
        lines += [
            f"So a cold request makes {cold_total:g} and a warm one {warm_total:g} in this run.",
            "`tests/integration/test_handler.py::test_a_warm_request_makes_exactly_two_round_trips`",
            "asserts the warm count in `make test`.",
            "",
        ]
    else:
        lines += [
            "The counts differ between processes in this run, so no single count is given.",
            "",
        ]
    return lines


def _call_setup(c: dict[str, Any] | None) -> list[str]:
    lines = ["### A call setup (`POST /v1/realtime/calls`)", ""]
    if not c:
        return [*lines, "Not measured in this run.", ""]
    cold, warm, runs = c["cold"], c["warm"], c["steps"]
    names = sorted(set(cold) | set(warm))
    lines += [
        "The template's defaults (`SPEND_LIMITS` set, a watcher started per call), counted at",
        "the fakes in each fresh process, the first (cold) setup apart from the second (warm)",
        f"one; averaged over {len(runs)} processes:",
        "",
        "| service | cold setup | warm setup |",
        "|---|---|---|",
        *[f"| {n} | {cold.get(n, 0):g} | {warm.get(n, 0):g} |" for n in names],
        "",
    ]
    warm_total = float(sum(warm.values()))
    if not warm_total.is_integer() or any(run != runs[0] for run in runs):
        return [*lines, "The warm setups differ between processes in this run.", ""]
    lines += [
        f"Each warm request held {c['hold_ms']} ms at the fakes, requests sent together",
        "overlap: the warm setup's steps of wall time, in order (same in every process):",
        "",
        *[f"{i}. {', '.join(step)}" for i, step in enumerate(runs[0], 1)],
        "",
        f"So a warm call setup makes {warm_total:g} round trips in {len(runs[0])} steps of wall",
        "time in this run. `tests/integration/test_calls.py::"
        "test_a_warm_call_setup_in_the_default_config_makes_four_steps_of_round_trips`",
        "asserts the steps in `make test`.",
        "",
    ]
    return lines


def _browser(b: dict[str, Any] | None) -> list[str]:
    lines = ["## 4. Browser connect time", ""]
    if not b:
        return [
            *lines,
            "Not measured in this run: the browser tests write `artifacts/browser-connect.json`",
            "(run `make test` first, then `make bench`).",
            "",
        ]
    p = b.get("parts", {})
    unavoidable = (
        max(p.get("tokenMs", 0), p.get("microphoneMs", 0))
        + p.get("sdpMs", 0)
        + p.get("iceDtlsMs", 0)
    )
    names = {
        "microphoneMs": "microphone prompt (in parallel with the token)",
        "tokenMs": "token request (API, cold function)",
        "offerMs": "offer and ICE gathering",
        "sdpMs": "SDP exchange with the emulator",
        "iceDtlsMs": "ICE and DTLS",
        "channelMs": "SCTP, data channel, first event",
    }
    lines += [
        "In headless Chromium against the local stack (from the latest `make test`): from the",
        f'click on "Start talking" to `session.created`: **{b["connect_ms"]:.0f} ms**. Its parts,',
        "measured in the same run:",
        "",
        "| part | ms |",
        "|---|---|",
        *[f"| {names.get(k, k)} | {v:.0f} |" for k, v in p.items()],
        "",
        "Sum of the unavoidable parts (the token request or the microphone, whichever is slower;",
        f"the SDP exchange; ICE and DTLS): {unavoidable:.0f} ms.",
        "",
    ]
    if "offerMs" in p:
        lines += [
            f"{NOT_MEASURED} the offer waits for ICE gathering ({p['offerMs']:.0f} ms above)",
            "because a server without trickle ICE needs every candidate in the offer.",
            "",
        ]
    return lines + _preflight(b)


def _preflight(b: dict[str, Any] | None) -> list[str]:
    pre = (b or {}).get("preflight")
    if not pre:
        return []
    return [
        "The first click's mint from a fresh browser: through the page's own origin, one"
        " request; straight to the API's origin (before the API moved under the page's"
        " distribution), a CORS preflight and then the POST, two round trips in sequence. In"
        " production that is one browser-to-API round trip saved. Timed with Chromium's"
        f" network emulation adding {pre['rtt_ms']} ms",
        f"per request (median of {pre['rounds']}): {pre['same_origin_ms']:.0f} ms against"
        f" {pre['cross_origin_ms']:.0f} ms; the emulation",
        "does not always delay preflights, so these figures are indicative only.",
        "",
    ]


FLOW_NAMES = {
    "calls": "server-owned call (the offer to `POST /v1/realtime/calls`: one request)",
    "client_secrets": "client secret (`POST /v1/realtime/client_secrets`, then the offer)",
}
FLOW_PARTS = {
    "microphoneMs": "microphone prompt (in parallel with the next)",
    "tokenMs": "the user's token (server-owned) / a client secret from our API",
    "offerMs": "offer and ICE gathering",
    "sdpMs": "the exchange: our API placing the call / the offer to OpenAI",
    "iceDtlsMs": "ICE and DTLS",
    "channelMs": "SCTP, data channel, first event",
}


def _flows(flows: dict[str, Any]) -> list[str]:
    calls, secrets = flows["calls"], flows["client_secrets"]
    lines = [
        "## 4. Browser connect time",
        "",
        "In headless Chromium against the local stack, measured by this run",
        f"(`tests/e2e/test_connect_time.py`: {calls['runs']} runs per flow, alternating, after one",
        'warm-up each): from the click on "Start talking" to `session.created`.',
        "",
        "| flow | median ms | runs (ms) |",
        "|---|---|---|",
    ]
    for name, flow in flows.items():
        runs = ", ".join(f"{v:.0f}" for v in flow["connect_ms"])
        lines.append(f"| {FLOW_NAMES.get(name, name)} | **{flow['median_ms']:.0f}** | {runs} |")
    lines += ["", _flows_verdict(calls, secrets), ""]
    lines += [
        "Where the time goes (medians of each part):",
        "",
        "| part | server-owned call | client secret |",
        "|---|---|---|",
    ]
    for key, label in FLOW_PARTS.items():
        a, b = calls["parts_median_ms"].get(key), secrets["parts_median_ms"].get(key)
        if a is None and b is None:
            continue
        lines.append(f"| {label} | {_whole(a)} | {_whole(b)} |")
    return [
        *lines,
        "",
        f"{NOT_MEASURED} the server-owned call makes one request to our API, carrying the offer",
        "(the function checks the token, admits the call in DynamoDB, creates its end-of-call",
        "schedule and relays the offer to OpenAI); the client-secret flow makes two, a secret",
        "from our API while the microphone opens, then the offer to OpenAI from the browser. On",
        "loopback a request costs no network time, so the server's extra work shows and the",
        "saved browser round trip does not; across a real network each request in a row costs",
        "a round trip.",
        "",
    ]


def _whole(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.0f}"


def _flows_verdict(calls: dict[str, Any], secrets: dict[str, Any]) -> str:
    """How the medians compare, and whether the runs' ranges overlap."""
    difference = secrets["median_ms"] - calls["median_ms"]
    a, b = calls["connect_ms"], secrets["connect_ms"]
    than = "faster than" if difference > 0 else "slower than"
    verdict = (
        f"The server-owned call's median is {abs(difference):.0f} ms {than} the client secret's"
    )
    if min(a) <= max(b) and min(b) <= max(a):
        spans = f"{min(a):.0f}-{max(a):.0f} vs {min(b):.0f}-{max(b):.0f} ms"
        return f"{verdict}; their runs overlap ({spans})."
    return f"{verdict}, and no runs overlap."


def _load(load: dict[str, Any] | None) -> list[str]:
    lines = ["## 5. Throughput and quota contention", ""]
    if not load:
        return [*lines, "Not measured in this run (`python -m bench.stack_load` writes it).", ""]
    lines += [
        "Through the local stack (HTTP stand-in for API Gateway, the real handler in one process,",
        "moto's server, the emulator), 300 requests per row. The stand-in runs one request at a",
        "time, as one Lambda environment does; in AWS, concurrency comes from more environments",
        "(reserved concurrency caps it), not from one.",
        "",
        "| load | concurrency | req/s | p50 ms | p99 ms | statuses |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in load.items():
        lines += [
            f"| {name} | {r['concurrency']} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | "
            + ", ".join(f"{k}: {v}" for k, v in r["statuses"].items())
            + " |"
            for r in rows
        ]
    lines.append("")
    for name, rows in load.items():
        single = [r["rps"] for r in rows if r["concurrency"] == 1]
        more = [r["rps"] for r in rows if r["concurrency"] > 1]
        if single and more and max(more) <= 1.25 * single[0]:
            lines += [
                f"{name}: more concurrency raised throughput by at most"
                f" {max(max(more) / single[0] - 1, 0):.0%} in this run ({single[0]} req/s at 1,"
                f" at most {max(more)} above it). {NOT_MEASURED} one environment serves one"
                " request at a time, and so does the stand-in.",
                "",
            ]
    return [
        *lines,
        f"{NOT_MEASURED} the hot user's requests are refused by the conditional write itself",
        "(no OpenAI call). That the count stays exact under contention is tested by",
        "`tests/security/test_quota_concurrency.py`.",
        "",
    ]


def _cost(cold: dict[str, Any]) -> list[str]:
    lines = [
        "## 6. Cost of one million mints on AWS",
        "",
        "Prices: us-east-1 list prices (API Gateway HTTP API $1.00/M, Lambda arm64",
        "$0.0000133334/GB-s + $0.20/M requests, DynamoDB on-demand $0.625/M write units,",
        "Secrets Manager $0.05/10k calls, CloudWatch Logs $0.50/GB). Lambda bills wall time, and",
        "a mint waits mostly on OpenAI, whose latency cannot be measured here (no internet): the",
        "table shows three plausible values. Our own work is the warm wall time measured above.",
        "",
    ]
    for upstream_ms in (150, 400, 1000):
        duration = cold["warm_wall"]["median"] + upstream_ms
        items = cost_per_million(512, duration)
        lines += [
            f"With OpenAI answering in {upstream_ms} ms (duration ≈ {duration:.0f} ms):",
            "",
            "| item | USD per million mints |",
            "|---|---|",
        ]
        lines += [*[f"| {k} | {v:.2f} |" for k, v in items.items()], ""]
    return [
        *lines,
        "At rest the stack costs the secret ($0.40/month) and nothing else that scales with time",
        "(from the price list, not measured).",
        "",
    ]


def _sam_local(s: dict[str, Any] | None, cold: dict[str, Any]) -> list[str]:
    lines = ["## 7. sam local", ""]
    if not s:
        return [
            *lines,
            "Not measured in this run: `make sam-local-test` writes",
            "`artifacts/sam-local-timings.json` (run it first, then `make bench`).",
            "",
        ]
    invokes = s["invoke"].values()
    walls = [i["wall_s"] for i in invokes]
    durations = [i["cold_duration_ms"] for i in invokes if i.get("cold_duration_ms") is not None]
    api = s["start_api"]
    return [
        *lines,
        "`make sam-local-test` (the README's recipe against the local stack, a cold container",
        f"per `sam local invoke`; image `{s['image']}`), from its latest run:",
        "",
        "| | median (n) |",
        "|---|---|",
        f"| `sam local invoke`, whole command (CLI start, container, init, one request) | "
        f"{statistics.median(walls):.1f} s ({len(walls)}) |",
        f"| in the container: init + first request (the emulator's first `Duration`) | "
        f"{statistics.median(durations):.0f} ms ({len(durations)}) |",
        f"| in process (section 1): handler import + first response | {_ms(cold['handler'])} |",
        f"| `sam local start-api` to listening | {api['listening_s']:.1f} s (1) |",
        f"| `sam local start-api` to the first answer (the README's curl, a minted secret) | "
        f"{api['first_answer_s']:.1f} s (1) |",
        "",
        f"{NOT_MEASURED} each invoke's event differs (mint, refusals, preflight,",
        "OpenAPI), and each starts its container cold. The container's figure adds to the",
        "in-process one what a Lambda environment adds: a fresh interpreter and runtime client",
        "(awslambdaric), sources read from a bind mount, a 512 MB memory limit. Most of the",
        "command's seconds are SAM CLI's own start and Docker's; none of it exists in AWS, where",
        "SnapStart restores an initialised environment instead.",
        "",
        *(
            [f"Load average when it ended: {s['load_average_1min']} (2 cores).", ""]
            if "load_average_1min" in s
            else []
        ),
    ]
