"""Throughput and quota contention through the local stack (`python -m bench.stack_load`).

The stack runs the real handler in one API stand-in process: one Lambda environment, so the
figures are per environment. Two loads, each for a fixed number of requests at rising
concurrency: many users at once (every request allowed) and one hot user (a quota of 5 per
minute, so nearly every request is refused after a conditional write that fails). Loopback
only; bounded in count and time.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx

from devstack.stack import start_stack

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = 300
CONCURRENCY = (1, 4, 16)


async def run(url: str, tokens: list[str], concurrency: int) -> dict[str, object]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(range(REQUESTS))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in queue:
            started = time.perf_counter()
            response = await client.post(
                url, headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
            )
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    async with httpx.AsyncClient(
        timeout=30, limits=httpx.Limits(max_connections=concurrency)
    ) as client:
        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(worker(client) for _ in range(concurrency))), timeout=300
        )
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "concurrency": concurrency,
        "rps": round(REQUESTS / elapsed, 1),
        "p50_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


SCOPES = "openid realtime:mint realtime:client_secrets"


def _check(name: str, runs: list[dict[str, object]]) -> None:
    """Throughput of refusals is no figure: every answer is a mint or the quota's 429."""
    for result in runs:
        statuses = result["statuses"]
        assert isinstance(statuses, dict)
        wrong = {k: v for k, v in statuses.items() if k not in ("200", "429")}
        # Many users never meet their quota; the hot user meets it within the first run.
        if wrong or (name == "many users" and set(statuses) != {"200"}):
            raise SystemExit(f"stack load, {name}: answers other than mints and 429s: {statuses}")


def main() -> None:
    results: dict[str, list[dict[str, object]]] = {}
    for name, quotas, users in (
        ("many users", "1000000/minute", 200),
        ("one hot user", "5/minute", 1),
    ):
        # The API's own URL, open (ApiDoor=execute-api): the load meets the function and the
        # gateway, not the dev web server's proxy, as the figures always have.
        with start_stack(quotas=quotas, api_door="execute-api") as stack:
            url = stack.urls["api"] + "/v1/realtime/client_secrets"
            # The shipped client-secret profile is opt-in: its callers hold the scope.
            tokens = [stack.token(f"load-{i}", SCOPES) for i in range(users)]
            results[name] = [asyncio.run(run(url, tokens, c)) for c in CONCURRENCY]
            print(name, results[name], flush=True)
            _check(name, results[name])
    out = ROOT / "artifacts" / "stack-load.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
