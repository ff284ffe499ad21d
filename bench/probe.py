"""Runs in a fresh process of the function-only environment; prints one JSON line.

`probe.py boto3`    time to `import boto3`: the floor every Python Lambda pays.
`probe.py handler`  time to import the handler module and serve the first request, then a
                    second (warm) one, against the loopback fakes named in the environment.
Only `time`, `json`, `os` and `sys` are imported before the clock starts.
"""

import json
import os
import sys
import time


def event(token: str) -> dict:
    return {
        "version": "2.0",
        "routeKey": "POST /v1/realtime/client_secrets",
        "rawPath": "/v1/realtime/client_secrets",
        "rawQueryString": "",
        "headers": {"authorization": f"Bearer {token}", "content-type": "application/json"},
        "requestContext": {
            "http": {"method": "POST", "path": "/v1/realtime/client_secrets"},
            "requestId": "bench",
            "stage": "$default",
        },
        "body": "{}",
        "isBase64Encoded": False,
    }


class Context:
    function_name = "TokenFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:TokenFunction"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 9000


def main() -> None:
    mode = sys.argv[1]
    started = time.perf_counter()
    if mode == "boto3":
        import boto3  # noqa: F401

        print(json.dumps({"ms": (time.perf_counter() - started) * 1000}))
        return
    sys.path.insert(0, os.environ["FUNCTION_DIR"])
    from token_vendor import app

    imported = time.perf_counter()
    first = app.handler(event(os.environ["BENCH_TOKEN"]), Context())
    served = time.perf_counter()
    second = app.handler(event(os.environ["BENCH_TOKEN"]), Context())
    warm = time.perf_counter()
    assert first["statusCode"] == 200 and second["statusCode"] == 200, (first, second)
    print(
        json.dumps(
            {
                "ms": (served - started) * 1000,
                "import_ms": (imported - started) * 1000,
                "warm_ms": (warm - served) * 1000,
            }
        )
    )


if __name__ == "__main__":
    main()
