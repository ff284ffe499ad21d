"""GPT-Live on the local stack: how long a session takes to connect through our API, and what its
watcher costs per session-hour next to Live's own price, with the sideband's audio copies
flowing at OpenAI's pace.

    python -m bench.live_cost --sessions 10 --seconds 60

The connect time is an aiortc caller's: the offer posted to `POST /v1/live/sessions` (our API:
the JWT, the admission, the emulator's create, the schedules, the 15 s charge, the wait for the
watcher to attach) until the 201, then until `session.started` on the data channel. Loopback
only: OpenAI's own latency is not in it.

A Live sideband carries copies of the caller's and the model's audio, 100 ms events of base64
PCM16 at 24 kHz each way (about 128 KB/s), and OpenAI documents no way to turn them off. The
watcher recognises them by their first bytes and drops them unparsed (watcher/sideband.py);
the section measures what that saves against parsing each as JSON, and the watcher process's
CPU over a whole session. Lambda bills the wall time a watcher waits times its memory, so the
CPU share decides only whether a small memory size keeps up.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench.watcher_cost import PRICES, cpu_seconds, rss_mb

# The stack, aiortc and the tests' helpers are imported where a measurement runs: bench.report
# renders this section without them.

LIVE_ACTIVE_PER_HOUR = 0.05 * 60  # USD: GPT-Live's active voice (core/prices.json)
WATCH_SECONDS_PER_INVOCATION = 840  # WATCHER_MAX_SECONDS in template.yaml
LEASE_SECONDS = 60  # WATCHER_LEASE_SECONDS in template.yaml
AUDIO_EVENTS_PER_SECOND = 20  # 100 ms copies, caller's and model's
# A usage update that moves the voice total: a consistent read of the total, a transaction of
# two updates (the call's meter, the user's day: 2 write units each), the day's two items read.
USAGE_WRITE_UNITS, USAGE_READ_UNITS = 4, 3


def audio_copy(kind: str = "session.output_audio.delta") -> str:
    """One 100 ms copy as the sideband sends it: PCM16 at 24 kHz, base64, in a JSON event."""
    pcm = os.urandom(24_000 * 2 // 10)
    return json.dumps(
        {"type": kind, "delta": base64.b64encode(pcm).decode(), "start_ms": 0, "end_ms": 100}
    )


def parse_or_drop(repeats: int = 2000) -> dict[str, float]:
    """CPU per session-second for the audio copies: each parsed as JSON, or recognised by its
    first bytes and dropped (what the watcher does)."""
    from token_vendor.watcher.sideband import AUDIO_COPY

    import tests.support  # noqa: F401  (puts functions/ on the path, as for the tests)

    messages = [audio_copy(), audio_copy("session.input_audio.append")] * (repeats // 2)
    started = time.process_time()
    for message in messages:
        json.loads(message)
    parsed = (time.process_time() - started) / len(messages)
    started = time.process_time()
    for message in messages:
        AUDIO_COPY.match(message[:96])
    dropped = (time.process_time() - started) / len(messages)
    return {
        "message_bytes": len(messages[0]),
        "parse_cpu_per_s": parsed * AUDIO_EVENTS_PER_SECOND,
        "drop_cpu_per_s": dropped * AUDIO_EVENTS_PER_SECOND,
    }


async def connect_times(stack: Any, sessions: int) -> list[dict[str, float]]:
    import httpx

    from tests.support.live import LiveCaller

    times = []
    token = stack.token("bench-connect")
    with httpx.Client(
        base_url=stack.urls["web"], headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        for _ in range(sessions):
            caller = LiveCaller(microphone=True)
            try:
                offer = await caller.offer()
                started = time.monotonic()
                reply = await asyncio.to_thread(
                    client.post,
                    "/v1/live/sessions",
                    json={"transport": {"type": "webrtc", "sdp": offer}},
                )
                answered = time.monotonic()
                assert reply.status_code == 201, reply.text
                await caller.accept(reply.json()["transport"]["sdp"])
                await caller.until("session.started")
                times.append(
                    {
                        "api_ms": (answered - started) * 1000,
                        "started_ms": (time.monotonic() - started) * 1000,
                    }
                )
                session_id = reply.json()["session"]["id"]
                await asyncio.to_thread(client.post, f"/v1/live/sessions/{session_id}/hangup")
            finally:
                await caller.close()
    return times


async def watched_session(stack: Any, seconds: float) -> dict[str, Any]:
    import httpx

    from tests.support.live import LiveCaller

    pid = stack.processes["watcher"].popen.pid
    base = stack.urls["openai"].removesuffix("/v1")
    token = stack.token("bench-watch")
    idle_start, idle_cpu = time.monotonic(), cpu_seconds(pid)
    await asyncio.sleep(3)
    idle = (cpu_seconds(pid) - idle_cpu) / (time.monotonic() - idle_start)
    caller = LiveCaller(microphone=True)
    with httpx.Client(
        base_url=stack.urls["web"], headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        try:
            offer = await caller.offer()
            reply = await asyncio.to_thread(
                client.post,
                "/v1/live/sessions",
                json={"transport": {"type": "webrtc", "sdp": offer}},
            )
            assert reply.status_code == 201, reply.text
            session_id = reply.json()["session"]["id"]
            await caller.accept(reply.json()["transport"]["sdp"])
            await caller.until("session.started")
            started, cpu0 = time.monotonic(), cpu_seconds(pid)
            turns = 0
            while time.monotonic() - started < seconds:  # the model speaks now and then
                await asyncio.to_thread(
                    httpx.post,
                    f"{base}/__emulator/live/sessions/{session_id}/script",
                    json={"caller_says": f"turn {turns}"},
                )
                turns += 1
                await asyncio.sleep(5)
            wall = time.monotonic() - started
            busy = cpu_seconds(pid) - cpu0 - idle * wall
            state = httpx.get(f"{base}/__emulator/state", timeout=10).json()
            (record,) = [s for s in state["live_sessions_open"] if s["id"] == session_id]
            await asyncio.to_thread(client.post, f"/v1/live/sessions/{session_id}/hangup")
        finally:
            await caller.close()
    audio = record.get("sideband_audio") or {}
    return {
        "seconds": wall,
        "turns": turns,
        "cpu_seconds": max(busy, 0.0),
        "peak_rss_mb": rss_mb(pid),
        "usage_updates": len(record.get("usage_updates") or []),
        "sideband_audio_bytes": sum(v for v in audio.values() if isinstance(v, int | float)),
    }


def per_session_hour(memory_mb: int, updates_per_hour: float) -> dict[str, float]:
    lambda_cost = memory_mb / 1024 * 3600 * PRICES["lambda_arm_gb_second"]
    invocations = 3600 / WATCH_SECONDS_PER_INVOCATION
    writes = updates_per_hour * USAGE_WRITE_UNITS + 3600 / (LEASE_SECONDS / 3) + invocations * 3
    reads = updates_per_hour * USAGE_READ_UNITS + invocations * 2
    dynamodb = writes * PRICES["dynamodb_write_unit"] + reads * PRICES["dynamodb_read_unit"]
    total = lambda_cost + invocations * PRICES["lambda_request"] + dynamodb
    return {"lambda": lambda_cost, "dynamodb": dynamodb, "total": total}


def measure(sessions: int = 10, seconds: float = 60) -> dict[str, Any]:
    from devstack.stack import start_stack

    with start_stack(quotas="100/minute,1000/day") as stack:
        connects = asyncio.run(connect_times(stack, sessions))
        watched = asyncio.run(watched_session(stack, seconds))
    api = sorted(t["api_ms"] for t in connects)
    started = sorted(t["started_ms"] for t in connects)
    return {
        "sessions": len(connects),
        "api_ms": {"p50": statistics.median(api), "p90": api[int(0.9 * (len(api) - 1))]},
        "started_ms": {
            "p50": statistics.median(started),
            "p90": started[int(0.9 * (len(started) - 1))],
        },
        "watched": watched | {"cpu_share": watched["cpu_seconds"] / watched["seconds"]},
        "audio": parse_or_drop(),
        "per_session_hour": {
            cadence: {str(mb): per_session_hour(mb, per_hour) for mb in (128, 256)}
            for cadence, per_hour in (("1/s", 3600.0), ("1/min", 60.0))
        },
        "live_active_per_hour": LIVE_ACTIVE_PER_HOUR,
    }


def render(live: dict[str, Any] | None) -> list[str]:
    """The section of docs/performance.md (see docs/live.md for the reasoning)."""
    if live is None:
        return []
    w, a = live["watched"], live["audio"]
    lines = [
        "## 9. GPT-Live: connect time, and the watcher's cost per session-hour",
        "",
        f"{live['sessions']} Live sessions placed through our API on the local stack"
        " (`python -m bench.live_cost`; an aiortc caller, loopback, the emulator's create):",
        "",
        "| from the offer's POST to | p50 ms | p90 ms |",
        "|---|---|---|",
        f"| our 201 (JWT, admission, create, schedules, 15 s charge, watcher attached)"
        f" | {live['api_ms']['p50']:.0f} | {live['api_ms']['p90']:.0f} |",
        f"| `session.started` on the data channel | {live['started_ms']['p50']:.0f}"
        f" | {live['started_ms']['p90']:.0f} |",
        "",
        f"One session watched for {w['seconds']:.0f} s ({w['turns']} spoken turns,"
        f" {w['usage_updates']} usage updates, {w['sideband_audio_bytes'] / 1e6:.1f} MB of audio"
        f" copies to its sidebands): the watcher used {w['cpu_seconds']:.2f} s of CPU"
        f" ({w['cpu_share'] * 100:.2f} % of one core); its process peaked at"
        f" {w['peak_rss_mb']:.0f} MB (it also serves the local Invoke API).",
        f"The audio copies ({a['message_bytes'] / 1000:.1f} KB each, 20 a second): parsed as"
        f" JSON they would cost {a['parse_cpu_per_s'] * 1000:.2f} ms of CPU per session-second;"
        f" recognised by their first bytes and dropped, {a['drop_cpu_per_s'] * 1000:.3f} ms.",
        "",
        "| usage updates | memory | USD per session-hour | Lambda | DynamoDB |",
        "|---|---|---|---|---|",
    ]
    for cadence, by_memory in live["per_session_hour"].items():
        for mb, cost in by_memory.items():
            lines.append(
                f"| {cadence} | {mb} MB | {cost['total']:.4f} | {cost['lambda']:.4f}"
                f" | {cost['dynamodb']:.5f} |"
            )
    return [
        *lines,
        "",
        f"Next to it: an hour of GPT-Live active voice costs ${live['live_active_per_hour']:.2f}"
        " (OpenAI's list price). OpenAI does not publish the cadence of its usage updates"
        " (the emulator sends one a second; Azure documents about one a minute): both rows are"
        " shown.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    measured = measure(args.sessions, args.seconds)
    Path("artifacts").mkdir(exist_ok=True)
    Path("artifacts/live-cost.json").write_text(json.dumps(measured, indent=1))
    print("\n".join(render(measured)))


if __name__ == "__main__":
    main()
