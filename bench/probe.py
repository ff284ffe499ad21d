"""Runs in a fresh process of the function-only environment; prints one JSON line.

`probe.py boto3`    time to `import boto3`: the floor every Python Lambda pays.
`probe.py handler`  time to import the handler module and serve the first request, then a
                    second (warm) one, against the loopback fakes named in the environment.
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


def fake_counts() -> dict[str, int]:
    """The fakes' request counts so far (bench.fake_services' /__counts)."""
    import urllib.request

    url = os.environ["AWS_ENDPOINT_URL"] + "/__counts"
    with urllib.request.urlopen(url) as response:  # noqa: S310  a loopback URL we set
        counts: dict[str, int] = json.loads(response.read())
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
