"""Turns the measured figures into docs/performance.md, with the cost worked from prices."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench import live_cost, network, watcher_cost

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
        _intro(r) + _cold(r) + _warm(r["warm"])
        + _round_trips(r["cold"]["round_trips"], (r.get("watcher_cold") or {}).get("round_trips"))
        + _call_setup(r.get("call_setup"))
        + (_flows(r["browser_flows"]) + _preflight(r.get("browser")) if r.get("browser_flows")
           else _browser(r.get("browser")))
        + _load(r.get("load")) + _cost(r["cold"])
        + _sam_local(r.get("sam_local"), r["cold"])
        + watcher_cost.render(r.get("watcher"))
        + live_cost.render(r.get("live"))
        + network.render(r.get("network"))
    ) + "\n"  # fmt: skip


def _intro(r: dict[str, Any]) -> list[str]:
    return [
        "# Performance",
        "",
        f"Measured by `make bench` on {r['machine']}, Python {r['python']} (the Lambda runtime's",
        "version). Each function runs in its own environment: the runtime's boto3 (uv.lock's",
        "version, not bundled) and the function's package as `sam build` makes it",
        "(`functions/Makefile`, built for this machine's architecture) first on the path, as",
        "`/var/task` is in Lambda. Each figure sits next to its reference, measured in the same",
        "run. The machine is shared with other work, so medians matter more than any single run.",
        "A conclusion is printed only when this run's numbers support it; paragraphs marked as",
        "explanations are not measurements. How the figures are taken: `bench/README.md`.",
        "",
        *_load_average(r.get("load_average"), r.get("load_average_cold")),
    ]


def _load_average(load: list[float] | None, cold: list[list[float]] | None = None) -> list[str]:
    if not load:
        return []
    before, after = load
    lines = [
        f"The machine's one-minute load average was {before:.1f} when the run started and"
        f" {after:.1f} when it ended (measured).",
    ]
    if cold:
        start, end = (", ".join(f"{x:.1f}" for x in values) for values in cold)
        lines.append(
            f"Over sections 1 to 3 (one, five and fifteen minutes): {start} before, {end} after."
        )
    return [*lines, ""]


TOKEN, WATCHER = "TokenFunction", "CallWatcherFunction"


def _cell(summary: dict[str, float] | None) -> str:
    return "-" if summary is None else _ms(summary)


def _size(package: dict[str, Any] | None) -> str:
    if not package:
        return "-"
    files = f", {package['files']:,} files" if "files" in package else ""
    zipped = (
        f" ({package['zipped_bytes'] / 1e6:.1f} MB zipped)" if "zipped_bytes" in package else ""
    )
    return f"{package['bytes'] / 1e6:.1f} MB{files}{zipped}"


def _largest(package: dict[str, Any] | None) -> str:
    if not package:
        return "-"
    return ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in package["largest"])


def _cold(r: dict[str, Any]) -> list[str]:
    cold, choices = r["cold"], r.get("choices", {})
    watcher: dict[str, Any] = r.get("watcher_cold") or {}
    packages: dict[str, Any] = r.get("packages") or {}
    ratio = cold["ratio"]

    def row(name: str, token: str, watch: str) -> str:
        return f"| {name} | {token} | {watch} |"

    def ratio_cell(c: dict[str, Any], key: str) -> str:
        return f"{c[key]:.2f}x" if key in c else "-"

    lines = [
        "## 1. Cold start, per function",
        "",
        "A fresh process per run, against loopback fakes of DynamoDB, Secrets Manager, the key",
        "set and OpenAI (real clients, real sockets, no service latency). The token function",
        "imports its handler and serves a first mint. The call watcher imports its handler,",
        "builds its container and handles one watch event whose sideband the fakes refuse (it",
        "takes the call's lease, reads the key, is refused, lets the lease go). Each run is",
        "interleaved with a bare `import boto3` in the same function's environment.",
        "",
        f"| | {TOKEN} | {WATCHER} |",
        "|---|---|---|",
        row("package, unzipped", _size(packages.get(TOKEN)), _size(packages.get(WATCHER))),
        row("`import boto3` (the floor)", _cell(cold["floor"]), _cell(watcher.get("floor"))),
        row("handler import", _cell(cold["import"]), _cell(watcher.get("import"))),
        row(
            "... + its container built",
            "(built by the first request)",
            _cell(watcher.get("container")),
        ),
        row(
            "... + first response (a mint) / first event",
            _cell(cold["handler"]),
            _cell(watcher.get("handler")),
        ),
        row(
            "second (warm) response / event, wall",
            _cell(cold["warm_wall"]),
            _cell(watcher.get("warm_wall")),
        ),
        row(
            "**ratio, first response / floor**",
            f"**{ratio:.2f}x**",
            f"**{watcher['ratio']:.2f}x**" if "ratio" in watcher else "-",
        ),
        row(
            "the same ratio in CPU time (less disturbed by other work)",
            ratio_cell(cold, "cpu_ratio"),
            ratio_cell(watcher, "cpu_ratio"),
        ),
        "",
        f"Token function: **{ratio:.2f}x** the floor (target {COLD_TARGET}x: "
        f"{_met(ratio <= COLD_TARGET)}). The target is the token function's, whose cold start",
        "a user waits on; the watcher is invoked asynchronously and has none.",
        "",
    ]
    if packages:
        lines += [
            "Each package's largest parts (unzipped, top-level entries):",
            "",
            f"| | {TOKEN} | {WATCHER} |",
            "|---|---|---|",
            row("largest", _largest(packages.get(TOKEN)), _largest(packages.get(WATCHER))),
            "",
        ]
    lines += _imports(r["imports"], r.get("watcher_imports"))
    lines += _stages(r.get("stages"), ratio)
    lines += [
        "### The import choices behind the design, measured in this run",
        "",
        "| choice | import ms (median) |",
        "|---|---|",
        *[f"| {name} | {ms:.0f} |" for name, ms in choices.items()],
        "",
        "What the code does about cold starts (facts about the code, not measurements):",
        "",
        "- botocore clients instead of boto3's: the functions never import boto3 (s3transfer and",
        "  the resource layer come with it).",
        "- a small router instead of Powertools' event handler (a handful of routes).",
        "- the build ships unchecked-hash bytecode (`functions/Makefile`): Lambda's `/var/task`",
        "  is read-only, so without it our modules compile from source at every start.",
        "- each function ships only its own room, the core and its own requirements.",
        "- nothing touches the network at import or while the container is built.",
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
            f"{NOT_MEASURED} why the target is not met. What is left is the libraries the mint",
            "needs, each paid once per container: botocore creating its DynamoDB client (the",
            "first client of a session parses botocore's endpoint table, 1.3 MB, lists every",
            "service's data folder and loads the service's model and endpoint rules) and its",
            "Secrets Manager client; httpx's client (the httpcore import, and certifi's CA bundle",
            "loaded into a TLS context: OpenAI and the key set are https); PyJWT with",
            "cryptography (RS256; PyJWT imports `cryptography.x509` at module level); Powertools'",
            "Logger and Metrics; then the first mint itself (what each would take to remove:",
            "`bench/README.md`).",
            "What the mint never uses is not built for it: the Scheduler and Lambda clients and",
            "the calls routes' modules wait for the first call (`api/deps.py`). The remedy on",
            "AWS is SnapStart: the function registers hooks that build every client before the",
            "snapshot (no network) and forget cached secrets after restore (`api/app.py`,",
            "tested by `tests/unit/test_snapstart.py`), so a restored function pays none of it.",
            "",
        ]
    return lines


def _imports(token: list[Any], watcher: list[Any] | None) -> list[str]:
    """What each handler imports beyond `import boto3`, side by side."""
    ours, theirs = dict(token), dict(watcher or [])
    names = sorted(set(ours) | set(theirs), key=lambda n: -max(ours.get(n, 0), theirs.get(n, 0)))

    def cell(table: dict[str, float], name: str) -> str:
        return f"{table[name]:.1f}" if name in table else "-"

    return [
        "What each handler module imports beyond `import boto3` (self time in ms, by top-level",
        "package; `-`: not imported, or not among that function's twelve largest):",
        "",
        f"| package | {TOKEN} | {WATCHER} |",
        "|---|---|---|",
        *[f"| {n} | {cell(ours, n)} | {cell(theirs, n)} |" for n in names],
        "",
    ]


def _stages(stages: dict[str, Any] | None, ratio: float) -> list[str]:
    """Where the token function's cold start goes, and what the target leaves for it."""
    if not stages:
        return []
    floor_ms, floor_cpu = stages["floor"]
    parts: dict[str, list[float]] = stages["stages"]
    lines = [
        "### Where the token function's cold start goes",
        "",
        "One fresh process per run (`bench/stages_probe.py`), each stage timed in the order the",
        "first request meets it: the libraries one by one (in the order below; httpcore, imported",
        "when httpx builds its first client, apart), our modules, the container as the first",
        f"request builds it, then the first mint; medians of {stages['runs']} runs,",
        "interleaved with the floor.",
        "",
        "| stage | ms | CPU ms | CPU, share of the floor |",
        "|---|---|---|---|",
        f"| `import boto3` (the floor, its own process) | {floor_ms:.1f} | {floor_cpu:.1f} | 1 |",
        *[
            f"| {name} | {wall:.1f} | {cpu:.1f} | {cpu / floor_cpu:.2f} |"
            for name, (wall, cpu) in parts.items()
        ],
        f"| **sum of the stages** | {sum(w for w, _ in parts.values()):.1f} | "
        f"{sum(c for _, c in parts.values()):.1f} | "
        f"{sum(c for _, c in parts.values()) / floor_cpu:.2f} |",
        "",
    ]
    botocore = next((cpu for name, (_, cpu) in parts.items() if "botocore.session" in name), None)
    if ratio > COLD_TARGET and botocore is not None:
        budget = COLD_TARGET * floor_cpu - botocore
        beyond = {n: cpu for n, (_, cpu) in parts.items() if "botocore.session" not in n}
        largest = sorted(beyond.items(), key=lambda item: -item[1])[:4]
        lines += [
            f"At {COLD_TARGET}x, what the token function may spend beyond importing"
            f" botocore.session (which the floor spends too) is {COLD_TARGET}"
            f" x {floor_cpu:.0f} - {botocore:.0f} = {budget:.0f} ms of CPU in this run; its"
            f" other stages took {sum(beyond.values()):.0f} ms, the largest: "
            + "; ".join(f"{name} {cpu:.0f} ms" for name, cpu in largest)
            + ".",
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


def _round_trips(
    trips: dict[str, dict[str, float]], watcher: dict[str, dict[str, float]] | None = None
) -> list[str]:
    return _mint_round_trips(trips) + _watch_round_trips(watcher)


def _watch_round_trips(trips: dict[str, dict[str, float]] | None) -> list[str]:
    if not trips:
        return []
    cold, warm = trips["cold"], trips["warm"]
    return [
        "### A watch event (the call watcher)",
        "",
        "The event of section 1, whose sideband the fakes refuse: counted at the fakes, the",
        "first (cold) event apart from the second (warm) one, averaged over the processes:",
        "",
        "| service | cold event | warm event |",
        "|---|---|---|",
        *[
            f"| {n} | {cold.get(n, 0):g} | {warm.get(n, 0):g} |"
            for n in sorted(set(cold) | set(warm))
        ],
        "",
    ]


def _mint_round_trips(trips: dict[str, dict[str, float]]) -> list[str]:
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
        " distribution), a CORS preflight and then the POST, two requests in sequence (what"
        " that costs across a network: section 10, each profile's API's-own-origin rows)."
        " Timed with Chromium's"
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
    "microphoneMs": "microphone prompt (in parallel with the next two)",
    "tokenMs": "the user's token (server-owned) / a client secret from our API",
    "offerMs": "offer and ICE gathering (in parallel with the token or secret)",
    "readyMs": "offer sent at (microphone, token or secret, and offer all ready)",
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
        "browser's second request does not: section 10 measures both flows across a network.",
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
