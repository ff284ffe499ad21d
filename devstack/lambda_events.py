"""What Lambda hands the function: an API Gateway HTTP API (payload 2.0) event and a context.

The one builder of both, for the local stack's gateway (`devstack.apigw`), the tests and the
bench. It imports nothing but `os` and `time`, and no typing module, because the bench's
cold-start probe loads it before its clock starts, in an environment that holds only the
function's dependencies: whatever it imported would be missing from the measured import time.
"""

from __future__ import annotations

import os
import time

ACCOUNT_ID = "123456789012"
API_ID = "devstack01"
FUNCTION_NAME = "TokenFunction"


def new_request_id() -> str:
    """A random id in the form of a UUID, as the gateway and Lambda write theirs."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def http_event(
    method: str = "POST",
    path: str = "/v1/realtime/client_secrets",
    headers: dict[str, str] | dict[str, str | None] | None = None,
    body: str | None = None,
    base64: bool = False,
    *,
    raw_query: str = "",
    query: dict[str, str] | None = None,
    cookies: list[str] | None = None,
    domain: str = "api.example.com",
    source_ip: str = "203.0.113.9",
    protocol: str = "HTTP/1.1",
    request_id: str | None = None,
    raw_path: str | None = None,
    now: float | None = None,
) -> dict[str, object]:
    """A payload-format-2.0 event, shaped as the gateway shapes it.

    Header names are lower-cased (repeated headers arrive already joined with commas; a header
    given as None is left out); cookies
    and query parameters go in their own fields and are left out when there are none, as is
    an empty body.
    """
    lowered = {k.lower(): v for k, v in (headers or {}).items() if v is not None}
    route_key = f"{method} {path}"
    now = time.time() if now is None else now
    event: dict[str, object] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path or path,
        "rawQueryString": raw_query,
        "headers": lowered,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": protocol,
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": request_id or new_request_id(),
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": base64,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body is not None:
        event["body"] = body
    return event


def function_arn(function_name: str = FUNCTION_NAME) -> str:
    return f"arn:aws:lambda:{region()}:{ACCOUNT_ID}:function:{function_name}"


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


class LambdaContext:
    """The attributes Lambda's Python runtime gives a handler (Powertools reads them).

    The time left counts down from `remaining_ms` at creation, as a real invocation's does.
    """

    identity = None
    client_context = None
    function_version = "$LATEST"
    log_stream_name = "devstack"

    def __init__(
        self,
        remaining_ms: int = 10_000,
        *,
        aws_request_id: str | None = None,
        function_name: str = FUNCTION_NAME,
        memory_limit_in_mb: int = 512,
        invoked_function_arn: str | None = None,
    ) -> None:
        self.aws_request_id = aws_request_id or new_request_id()
        self.function_name = function_name
        self.memory_limit_in_mb = memory_limit_in_mb
        # The ARN the caller named: qualified when it named a version or an alias.
        self.invoked_function_arn = invoked_function_arn or function_arn(function_name)
        self.log_group_name = f"/aws/lambda/{function_name}"
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
