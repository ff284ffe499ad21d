"""HTTP as API Gateway's HTTP API (payload 2.0) hands it to the function: the request's parts,
the response, and CORS (the same rules as the HttpApi in template.yaml; a test keeps them
equal)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .problems import Problem

CORS_ALLOW_METHODS = ("GET", "POST")
# What OpenAI's browser SDKs send on every request, so that an app on an allowed origin can
# point them at this API unchanged (docs/clients.md): the Agents SDK's WebRTC transport names
# its version (`x-openai-agents-sdk`), the `openai` package its platform (`x-stainless-*`). A
# header missing here fails the browser's preflight, and the SDK sees only "Failed to fetch".
# The function reads none of them; CORS is not access control (the JWT check stands alone).
OPENAI_SDK_HEADERS = (
    "x-openai-agents-sdk", "x-stainless-arch", "x-stainless-lang", "x-stainless-os",
    "x-stainless-package-version", "x-stainless-retry-count", "x-stainless-runtime",
    "x-stainless-runtime-version", "x-stainless-timeout",
)  # fmt: skip
CORS_ALLOW_HEADERS = ("authorization", "content-type", *OPENAI_SDK_HEADERS)
CORS_EXPOSE_HEADERS = (
    "retry-after", "ratelimit", "ratelimit-policy", "location", "call-ends-at",
    "call-minutes-left",
)  # fmt: skip
CORS_MAX_AGE = 600


@dataclass(frozen=True)
class Request:
    """The parts of an API Gateway event the routes read, defaulted when the event lacks them."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: str | None
    base64: bool
    raw_query: str = ""  # as sent: read, with its limits, by `bodies.query_parameters`

    @classmethod
    def from_event(cls, event: Any) -> Request:
        event = _mapping(event)
        http = _mapping(_mapping(event.get("requestContext")).get("http"))
        headers = _mapping(event.get("headers"))
        raw_query = event.get("rawQueryString")
        return cls(
            raw_query=raw_query if isinstance(raw_query, str) else "",
            method=str(http.get("method", "")).upper(),
            path=str(event.get("rawPath") or http.get("path") or ""),
            headers={str(k).lower(): str(v) for k, v in headers.items()}
            if isinstance(headers, dict)
            else {},
            body=event.get("body") if isinstance(event.get("body"), str) else None,
            base64=event.get("isBase64Encoded") is True,
        )


@dataclass
class Response:
    """An HTTP answer, turned into the Lambda proxy result by `to_lambda`."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls,
        status: int,
        document: Any,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Response:
        body = json.dumps(document, separators=(",", ":")).encode()
        return cls(status, body, {"Content-Type": content_type} | (headers or {}))

    @classmethod
    def problem(cls, problem: Problem) -> Response:
        return cls.json(
            problem.status,
            problem.body(),
            "application/problem+json",
            problem.headers | {"Cache-Control": "no-store"},
        )

    def to_lambda(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            "headers": self.headers,
            "body": self.body.decode(),
            "isBase64Encoded": False,
        }


def _mapping(value: Any) -> dict[str, Any]:
    """Direct invocations can send anything: whatever is not a mapping is treated as empty."""
    return value if isinstance(value, dict) else {}


def preflight(request: Request, origins: tuple[str, ...]) -> Response:
    response = Response(204)
    origin = request.headers.get("origin")
    method = request.headers.get("access-control-request-method", "").upper()
    wanted = {
        h.strip().lower()
        for h in request.headers.get("access-control-request-headers", "").split(",")
    }
    wanted.discard("")
    if origin in origins and method in CORS_ALLOW_METHODS and wanted <= set(CORS_ALLOW_HEADERS):
        response.headers.update({
            "Access-Control-Allow-Methods": ", ".join(CORS_ALLOW_METHODS),
            "Access-Control-Allow-Headers": ", ".join(CORS_ALLOW_HEADERS),
            "Access-Control-Max-Age": str(CORS_MAX_AGE),
        })  # fmt: skip
    return response


def add_cors(response: Response, request: Request, origins: tuple[str, ...]) -> None:
    origin = request.headers.get("origin")
    response.headers["Vary"] = "Origin"
    if not origin or origin not in origins:
        return  # no Origin (a mobile app, curl) works; a foreign origin just gets no CORS grant
    response.headers["Access-Control-Allow-Origin"] = origin
    if request.method != "OPTIONS":
        response.headers["Access-Control-Expose-Headers"] = ", ".join(CORS_EXPOSE_HEADERS)
    elif "Access-Control-Allow-Methods" not in response.headers:
        del response.headers["Access-Control-Allow-Origin"]  # a refused preflight grants nothing
