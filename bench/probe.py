"""Runs in a fresh process of one function's environment (the runtime's boto3, the function's
package first on PYTHONPATH, as /var/task is in Lambda); prints one JSON line.

`probe.py boto3`    time to `import boto3`: the floor every Python Lambda pays.
`probe.py handler`  the token function: time to import the handler module and serve the first
                    request (a mint), then a second (warm) one, against the loopback fakes
                    named in the environment.
`probe.py watcher`  the call watcher: time to import its handler module, build its container
                    and handle one watch event (the fakes refuse the call's sideband, so the
                    watcher takes the lease, reads the key, is refused and lets the lease go),
                    then a second (warm) one.
`probe.py calls`    a cold then a warm call setup (POST /v1/realtime/calls); the warm one's
                    requests are held HOLD_MS each at the fakes, which record their spans.
Before the clock starts only `time`, `json`, `os`, `sys` and `devstack.lambda_events` (which
imports nothing more) are loaded. Each figure is wall time (`ms`) and the process's CPU time
(`cpu_ms`, which other work on the machine disturbs less). After each request, outside the
timed spans, the probe reads the fakes' request counts, so cold and warm round trips are
counted apart.
"""

import json
import os
import sys
import time

from devstack.lambda_events import LambdaContext, http_event


def mint_event(token: str) -> dict[str, object]:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    return http_event("POST", "/v1/realtime/client_secrets", headers, "{}")


OFFER_SDP = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n"
)
HOLD_MS = 50


def call_event(token: str) -> dict[str, object]:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/sdp"}
    return http_event("POST", "/v1/realtime/calls", headers, OFFER_SDP)


def fake(path: str, method: str = "GET") -> bytes:
    """bench.fake_services' counters and control: /__counts, /__spans, /__hold."""
    import urllib.request

    url = os.environ["AWS_ENDPOINT_URL"] + path
    data = b"" if method == "POST" else None
    request = urllib.request.Request(url, method=method, data=data)  # noqa: S310  (ours)
    with urllib.request.urlopen(request) as response:  # noqa: S310  a loopback URL we set
        body: bytes = response.read()
        return body


def fake_counts() -> dict[str, int]:
    """The fakes' request counts so far."""
    counts: dict[str, int] = json.loads(fake("/__counts"))
    return counts


def watch_event(n: int) -> dict[str, object]:
    """A call's watch event, as the token function sends it (`core.jobs.watch_event`)."""
    return {
        "action": "watch", "call_id": f"rtc_bench{n}_{os.getpid()}", "user": "u" * 32,
        "profile": "default", "session": {"type": "realtime"}, "on_session_change": "restore",
        "ends_at": time.time() + 600, "handovers": 0,
    }  # fmt: skip


def ms(since: float, cpu_since: float) -> tuple[float, float]:
    """Wall and CPU milliseconds since the two clocks read `since` and `cpu_since`."""
    return (time.perf_counter() - since) * 1000, (time.process_time() - cpu_since) * 1000


def watcher(started: float, cpu_started: float) -> None:
    from token_vendor.watcher import app, deps

    imported = ms(started, cpu_started)
    deps.container(app.logger)
    built = ms(started, cpu_started)
    context = LambdaContext(900_000, function_name="CallWatcherFunction")
    first = app.handler(watch_event(1), context)
    handled = ms(started, cpu_started)
    after_first = fake_counts()
    resumed, cpu_resumed = time.perf_counter(), time.process_time()
    second = app.handler(watch_event(2), context)
    warm = ms(resumed, cpu_resumed)
    assert first["status"] == second["status"] == "not_attached", (first, second)
    print(json.dumps({
        "import_ms": imported[0], "import_cpu_ms": imported[1],
        "container_ms": built[0], "container_cpu_ms": built[1],
        "ms": handled[0], "cpu_ms": handled[1], "warm_ms": warm[0], "warm_cpu_ms": warm[1],
        "counts_after_first": after_first,
    }))  # fmt: skip


def main() -> None:
    mode = sys.argv[1]
    started, cpu_started = time.perf_counter(), time.process_time()
    if mode == "boto3":
        import boto3  # noqa: F401

        wall, cpu = ms(started, cpu_started)
        print(json.dumps({"ms": wall, "cpu_ms": cpu}))
        return
    if mode == "watcher":
        watcher(started, cpu_started)
        return
    from token_vendor.api.app import handler

    if mode == "calls":  # round trips only: the warm setup's requests are held, not timed
        token = os.environ["BENCH_TOKEN"]
        before = fake_counts()
        first = handler(call_event(token), LambdaContext(9000))
        after_first = fake_counts()
        fake(f"/__hold?ms={HOLD_MS}", "POST")
        try:
            second = handler(call_event(token), LambdaContext(9000))
            spans = json.loads(fake("/__spans"))
        finally:
            fake("/__hold?ms=0", "POST")
        after = fake_counts()
        assert first["statusCode"] == 201 and second["statusCode"] == 201, (first, second)
        names = sorted(set(before) | set(after))
        print(json.dumps({
            "cold": {n: after_first.get(n, 0) - before.get(n, 0) for n in names},
            "warm": {n: after.get(n, 0) - after_first.get(n, 0) for n in names},
            "spans": spans,
            "hold_ms": HOLD_MS,
        }))  # fmt: skip
        return
    imported = ms(started, cpu_started)
    first = handler(mint_event(os.environ["BENCH_TOKEN"]), LambdaContext(9000))
    served = ms(started, cpu_started)
    after_first = fake_counts()
    resumed, cpu_resumed = time.perf_counter(), time.process_time()
    second = handler(mint_event(os.environ["BENCH_TOKEN"]), LambdaContext(9000))
    warm = ms(resumed, cpu_resumed)
    assert first["statusCode"] == 200 and second["statusCode"] == 200, (first, second)
    print(json.dumps({
        "import_ms": imported[0], "import_cpu_ms": imported[1],
        "ms": served[0], "cpu_ms": served[1], "warm_ms": warm[0], "warm_cpu_ms": warm[1],
        "counts_after_first": after_first,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
