"""What a call watcher costs per call-hour on AWS: measured CPU and memory of a real watcher
(the local stack's CallWatcherFunction, one call, the emulator's sideband), priced on paper.

    python -m bench.watcher_cost --seconds 60 --every 5

Lambda bills the wall time a watcher waits, times its memory: CPU only decides whether a
smaller memory size (less CPU share) still keeps up. DynamoDB is billed per request: one
charge per response (a transaction of three small updates) plus its read, and a lease renewal every
WATCHER_LEASE_SECONDS / 3. The OpenAI side is the shared document's price table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

# The stack, the SDK and aiortc are imported where a measurement runs: bench.report renders
# this section without them.

PRICES = {  # us-east-1, late 2026 list prices (docs/performance.md uses the same)
    "lambda_arm_gb_second": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    "dynamodb_write_unit": 0.625 / 1e6,
    "dynamodb_read_unit": 0.125 / 1e6,
}
WATCH_SECONDS_PER_INVOCATION = 840  # WATCHER_MAX_SECONDS in template.yaml
LEASE_SECONDS = 60  # WATCHER_LEASE_SECONDS in template.yaml
# OpenAI, gpt-realtime-2.1 (core/prices.json; docs/openai-contract.md §8): USD per 1M audio
# tokens, and the token rates assumed for speech (OpenAI does not publish them; ~10 tokens/s
# heard, ~20 tokens/s spoken, as the emulator counts).
AUDIO_IN, AUDIO_OUT, AUDIO_CACHED = 32.0, 64.0, 0.40
TOKENS_IN_PER_S, TOKENS_OUT_PER_S = 10, 20


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def watched_call(stack: Any, seconds: float, every: float) -> dict[str, Any]:
    import openai

    from devstack import aws
    from devstack.stack import WATCHER_FUNCTION
    from tests.support.caller import Caller
    from tests.support.realtime import LOCATION, user_says

    pid = stack.processes["watcher"].popen.pid
    caller = Caller(microphone=True)
    server = openai.AsyncOpenAI(base_url=stack.urls["openai"], api_key=stack.openai_key)
    try:
        raw = await server.realtime.calls.with_raw_response.create(
            sdp=await caller.offer(),
            session={"type": "realtime", "instructions": "Be brief."},
        )
        match = LOCATION.match(raw.headers["location"])
        assert match is not None
        call_id = match.group(1)
        await caller.accept(raw.text)
        await caller.until("conversation.created")
        idle_start, idle_cpu = time.monotonic(), cpu_seconds(pid)
        await asyncio.sleep(5)
        idle = (cpu_seconds(pid) - idle_cpu) / (time.monotonic() - idle_start)
        client = aws.client("lambda", stack.urls["watcher"])
        event = {
            "action": "watch",
            "call_id": call_id,
            "user": "bench",
            "profile": "assistant",
            "session": {"type": "realtime", "instructions": "Be brief."},
            "on_session_change": "restore",
            "ends_at": time.time() + seconds + 60,
        }
        client.invoke(
            FunctionName=WATCHER_FUNCTION, InvocationType="Event", Payload=json.dumps(event)
        )
        started, cpu0 = time.monotonic(), cpu_seconds(pid)
        responses = 0
        while time.monotonic() - started < seconds:
            caller.send(user_says(f"turn {responses}"))
            caller.send({"type": "response.create"})
            await caller.until("response.done")
            responses += 1
            await asyncio.sleep(every)
        wall = time.monotonic() - started
        busy = cpu_seconds(pid) - cpu0 - idle * wall  # the gateway's own idle share removed
        await server.realtime.calls.hangup(call_id)
        return {
            "seconds": wall,
            "responses": responses,
            "cpu_seconds": max(busy, 0.0),
            "peak_rss_mb": rss_mb(pid),
        }
    finally:
        await caller.close()
        await server.close()


def per_call_hour(measured: dict[str, Any], memory_mb: int) -> dict[str, float]:
    responses_per_hour = measured["responses"] / measured["seconds"] * 3600
    lambda_cost = memory_mb / 1024 * 3600 * PRICES["lambda_arm_gb_second"]
    invocations = 3600 / WATCH_SECONDS_PER_INVOCATION
    # Per response: a transaction of 3 small updates (the event's item, the call's meter, the
    # user's day: 2 write units each; the template's default has no global limit, which would
    # add everyone's day), then a consistent read of 2.
    writes = responses_per_hour * 6 + 3600 / (LEASE_SECONDS / 3) + invocations * 3
    reads = responses_per_hour * 2 + invocations * 2
    dynamodb = writes * PRICES["dynamodb_write_unit"] + reads * PRICES["dynamodb_read_unit"]
    total = lambda_cost + invocations * PRICES["lambda_request"] + dynamodb
    return {"lambda": lambda_cost, "dynamodb": dynamodb, "total": total}


def openai_audio_hour() -> float:
    """An hour of conversation, half heard and half spoken, no cache discount."""
    heard = 1800 * TOKENS_IN_PER_S * AUDIO_IN / 1e6
    spoken = 1800 * TOKENS_OUT_PER_S * AUDIO_OUT / 1e6
    return heard + spoken


def measure(seconds: float = 60, every: float = 5) -> dict[str, Any]:
    """One watched call on the local stack, and what a watcher costs per call-hour."""
    from devstack.stack import start_stack

    with start_stack() as stack:
        measured = asyncio.run(watched_call(stack, seconds, every))
    return measured | {
        "cpu_share": measured["cpu_seconds"] / measured["seconds"],
        "per_call_hour": {str(mb): per_call_hour(measured, mb) for mb in (128, 256)},
        "openai_audio_hour": openai_audio_hour(),
    }


def render(watcher: dict[str, Any] | None) -> list[str]:
    """The section of docs/performance.md (see docs/watcher.md for the reasoning)."""
    if watcher is None:
        return []
    lines = [
        "## 8. The call watcher: cost per call-hour on AWS",
        "",
        f"One call watched for {watcher['seconds']:.0f} s with {watcher['responses']} responses"
        f" (`python -m bench.watcher_cost`): the watcher used {watcher['cpu_seconds']:.2f} s of"
        f" CPU ({watcher['cpu_share'] * 100:.2f} % of one core); its process peaked at"
        f" {watcher['peak_rss_mb']:.0f} MB (an upper bound: it also serves the local Invoke API).",
        "Lambda bills the wall time it waits times its memory; DynamoDB one transaction of three",
        "small items and one read per response (no global limit, the template's default), a",
        "lease renewal every 20 s (docs/watcher.md).",
        "",
        "| memory | USD per call-hour | Lambda | DynamoDB |",
        "|---|---|---|---|",
    ]
    for mb, cost in watcher["per_call_hour"].items():
        lines.append(
            f"| {mb} MB | {cost['total']:.4f} | {cost['lambda']:.4f} | {cost['dynamodb']:.5f} |"
        )
    return [
        *lines,
        "",
        f"Next to it: an hour of audio on gpt-realtime-2.1 costs about"
        f" ${watcher['openai_audio_hour']:.2f} (paper: half heard at $32/M audio tokens, half"
        " spoken at $64/M, 10 and 20 tokens a second).",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--every", type=float, default=5, help="seconds between responses")
    args = parser.parse_args()
    print("\n".join(render(measure(args.seconds, args.every))))


if __name__ == "__main__":
    main()
