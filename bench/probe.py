"""Runs in a fresh process of the function-only environment; prints one JSON line.

`probe.py boto3`    time to `import boto3`: the floor every Python Lambda pays.
`probe.py handler`  time to import the handler module and serve the first request, then a
                    second (warm) one, against the loopback fakes named in the environment.
`probe.py calls`    a cold then a warm call setup (POST /v1/realtime/calls); the warm one's
                    requests are held HOLD_MS each at the fakes, which record their spans.
Before the clock starts only `time`, `json`, `os`, `sys` and `devstack.lambda_events` (which
imports nothing more) are loaded. After each request, outside the timed spans, the probe reads
the fakes' request counts, so cold and warm round trips are counted apart.
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


def main() -> None:
    mode = sys.argv[1]
    started = time.perf_counter()
    if mode == "boto3":
        import boto3  # noqa: F401

        print(json.dumps({"ms": (time.perf_counter() - started) * 1000}))
        return
    sys.path.insert(0, os.environ["FUNCTION_DIR"])
    from token_vendor.app import handler

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
    imported = time.perf_counter()
    first = handler(mint_event(os.environ["BENCH_TOKEN"]), LambdaContext(9000))
    served = time.perf_counter()
    after_first = fake_counts()
    resumed = time.perf_counter()
    second = handler(mint_event(os.environ["BENCH_TOKEN"]), LambdaContext(9000))
    warm = time.perf_counter()
    assert first["statusCode"] == 200 and second["statusCode"] == 200, (first, second)
    result = {
        "ms": (served - started) * 1000,
        "import_ms": (imported - started) * 1000,
        "warm_ms": (warm - resumed) * 1000,
        "counts_after_first": after_first,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
