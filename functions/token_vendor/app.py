"""Lambda entry point: an API Gateway HTTP API (payload 2.0) event in, a response out.

Routing, body parsing, CORS and the outcome log live here; decisions live in `service`.
A small router instead of Powertools' resolver: a handful of routes do not justify ~70 ms of
imports on every cold start (see docs/performance.md). The same function also receives one
non-HTTP event, the scheduled hangup of a call (`{"action": "hangup", ...}`, from
EventBridge Scheduler); the handler tells the two apart by the event's shape.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email import policy as email_policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from .auth import Caller, bearer_token
from .deadline import Deadline
from .deps import Container, build_container
from .errors import (
    AuthError,
    BodyTooLarge,
    CallLimitExceeded,
    ConfigError,
    DependencyError,
    DependencyMisconfigured,
    GlobalQuotaExceeded,
    InvalidRequest,
    QuotaExceeded,
    RequestError,
    TokenVendorError,
    UnsupportedMediaType,
)
from .parsing import NotJson, json_object
from .problems import Problem, method_not_allowed, not_found, problem_for, ratelimit_headers

CLIENT_SECRETS_PATH = "/v1/realtime/client_secrets"
CALLS_PATH = "/v1/realtime/calls"
HANGUP_PATH = re.compile(r"^/v1/realtime/calls/([^/]+)/hangup$")
OPENAPI_PATH = "/openapi.json"
OPENAPI_FILE = Path(__file__).with_name("openapi.json")
MAX_BODY_BYTES = 16 * 1024
MAX_CALL_BODY_BYTES = 64 * 1024  # an SDP offer (at most 32 KiB) and the session part
# The same CORS rules as the HttpApi in template.yaml (a test keeps them equal).
CORS_ALLOW_METHODS = ("GET", "POST")
CORS_ALLOW_HEADERS = ("authorization", "content-type")
CORS_EXPOSE_HEADERS = (
    "retry-after", "ratelimit", "ratelimit-policy", "location", "call-ends-at",
    "call-minutes-left",
)  # fmt: skip
CORS_MAX_AGE = 600

# Routes other than the mint publish no metric; Powertools would warn on each of them.
warnings.filterwarnings("ignore", message="No application metrics to publish")
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "token-vendor"))
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "RealtimeTokenVendor"),
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "token-vendor"),
)


@dataclass(frozen=True)
class Request:
    """The parts of an API Gateway event the routes read, defaulted when the event lacks them."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: str | None
    base64: bool
    query: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_event(cls, event: Any) -> Request:
        event = _mapping(event)
        http = _mapping(_mapping(event.get("requestContext")).get("http"))
        headers = _mapping(event.get("headers"))
        raw_query = event.get("rawQueryString")
        query = (
            dict(parse_qsl(raw_query, keep_blank_values=True)) if isinstance(raw_query, str) else {}
        )
        return cls(
            query=query,
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


class TokenApi:
    """The routes. `build` makes the container on first use and the instance keeps it."""

    def __init__(self, build: Callable[[], Container]) -> None:
        self._build = build
        self._container: Container | None = None

    @property
    def container(self) -> Container:
        if self._container is None:
            self._container = self._build()
        return self._container

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        if _is_scheduled_hangup(event):
            return self._scheduled_hangup(event, context)
        request = Request(method="", path="", headers={}, body=None, base64=False)
        origins: tuple[str, ...] = ()
        try:
            request = Request.from_event(event)
            origins = self.container.settings.allowed_origins
            response = self._route(request, context)
        except Exception as exc:  # the last line of defence: a problem document, never a trace
            # Counted, so the UnexpectedErrors alarm sees what no other metric would.
            metrics.add_metric(name="UnexpectedErrors", unit=MetricUnit.Count, value=1)
            logger.exception("unexpected failure", extra={"error": type(exc).__name__})
            response = Response.problem(problem_for(exc))
        _add_cors(response, request, origins)
        return response.to_lambda()

    def _route(self, request: Request, context: Any) -> Response:
        if request.path == CLIENT_SECRETS_PATH:
            if request.method == "POST":
                return self._mint(request, context)
            if request.method == "OPTIONS":
                return _preflight(request, self.container.settings.allowed_origins)
            return Response.problem(method_not_allowed("POST"))
        if request.path == CALLS_PATH:
            if request.method == "POST":
                return self._place_call(request, context)
            if request.method == "GET":
                return self._list_calls(request, context)
            if request.method == "OPTIONS":
                return _preflight(request, self.container.settings.allowed_origins)
            return Response.problem(method_not_allowed("GET, POST"))
        if hangup := HANGUP_PATH.match(request.path):
            if request.method == "POST":
                return self._hang_up(request, context, hangup.group(1))
            if request.method == "OPTIONS":
                return _preflight(request, self.container.settings.allowed_origins)
            return Response.problem(method_not_allowed("POST"))
        if request.path == OPENAPI_PATH:
            if request.method in ("GET", "HEAD"):
                return Response(200, _openapi(), {"Content-Type": "application/json"})
            return Response.problem(method_not_allowed("GET"))
        return Response.problem(not_found())

    def _caller(self, request: Request, deadline: Deadline) -> Caller:
        """The verified caller of a request, tagged on every log line that follows."""
        caller = self.container.vendor.authenticate(
            bearer_token(request.headers.get("authorization")), deadline
        )
        logger.append_keys(user=caller.user_hash, kid=caller.kid)
        return caller

    def _mint(self, request: Request, context: Any) -> Response:
        started = time.monotonic()
        deadline = Deadline.from_lambda_context(context)
        vendor = self.container.vendor
        try:
            caller = self._caller(request, deadline)
            minted = vendor.mint(caller, _json_body(request), deadline)
        except TokenVendorError as exc:
            _observe_failure(exc)
            return Response.problem(problem_for(exc))
        try:
            headers = {"Cache-Control": "no-store"} | ratelimit_headers(minted.windows)
            response = Response.json(200, minted.response_body(), headers=headers)
        except Exception:  # to the last-resort 500, with the unit returned: nothing delivered
            vendor.give_back(minted, deadline)
            raise
        upstream = minted.secret.upstream
        metrics.add_metric(name="SecretsMinted", unit=MetricUnit.Count, value=1)
        metrics.add_metric(
            name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=upstream.seconds * 1000
        )
        elapsed_ms = round((time.monotonic() - started) * 1000)
        logger.info("client secret minted", extra={
            "outcome": "minted", "profile": minted.plan.profile.name, "model": minted.plan.model,
            "lifetime": minted.plan.lifetime, "upstream_request_id": upstream.request_id,
            "upstream_attempts": upstream.attempts, "duration_ms": elapsed_ms,
        })  # fmt: skip
        return response

    # --- server-owned calls ----------------------------------------------------------------

    def _place_call(self, request: Request, context: Any) -> Response:
        started = time.monotonic()
        deadline = Deadline.from_lambda_context(context)
        container = self.container
        try:
            caller = self._caller(request, deadline)
            sdp, session, profile = _call_request(request)
            if missing := container.settings.calls_problems():
                raise ConfigError(missing)
            placed = container.calls.place(
                caller,
                sdp,
                session,
                profile,
                str(getattr(context, "invoked_function_arn", "")),
                deadline,
            )
        except TokenVendorError as exc:
            _observe_failure(exc)
            return Response.problem(problem_for(exc, "the call"))
        reservation, upstream = placed.reservation, placed.call.upstream
        metrics.add_metric(name="CallsPlaced", unit=MetricUnit.Count, value=1)
        metrics.add_metric(
            name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=upstream.seconds * 1000
        )
        logger.info("call placed", extra={
            "outcome": "call_placed", "call_id": placed.call.call_id,
            "profile": placed.plan.profile.name, "model": placed.plan.model,
            "ends_at": reservation.ends_at, "reserved_seconds": reservation.seconds,
            "upstream_request_id": upstream.request_id,
            "duration_ms": round((time.monotonic() - started) * 1000),
        })  # fmt: skip
        headers = {
            "Content-Type": "application/sdp",
            "Location": placed.location,
            "Cache-Control": "no-store",
            "Call-Ends-At": str(reservation.ends_at),
            "Call-Minutes-Left": str(reservation.minutes_left),
        } | ratelimit_headers(placed.windows)
        return Response(201, placed.call.answer_sdp.encode(), headers)

    def _hang_up(self, request: Request, context: Any, call_id: str) -> Response:
        deadline = Deadline.from_lambda_context(context)
        container = self.container
        try:
            caller = self._caller(request, deadline)
            ended = container.calls.hang_up(caller, call_id, deadline)
        except TokenVendorError as exc:
            _observe_failure(exc)
            return Response.problem(problem_for(exc, "the hangup"))
        if ended.settled:
            metrics.add_metric(name="CallsEnded", unit=MetricUnit.Count, value=1)
        logger.info("call hung up", extra={
            "outcome": "call_ended" if ended.settled else "call_already_ended",
            # Why it ended (the owner's `hangup`, or the line, the deadline, ... first): the
            # route is the owner's, but a repeated or late hangup did not end the call.
            "call_id": ended.call.id, "end_reason": ended.reason,
        })  # fmt: skip
        return Response.json(200, ended.body(), headers={"Cache-Control": "no-store"})

    def _list_calls(self, request: Request, context: Any) -> Response:
        deadline = Deadline.from_lambda_context(context)
        container = self.container
        try:
            caller = self._caller(request, deadline)
            listing = container.calls.list(caller, deadline)
        except TokenVendorError as exc:
            _observe_failure(exc)
            return Response.problem(problem_for(exc))
        return Response.json(200, listing, headers={"Cache-Control": "no-store"})

    def _scheduled_hangup(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """EventBridge Scheduler's invocation at a call's deadline. A failure to reach OpenAI
        raises, so the invocation is retried (the target's RetryPolicy); everything else,
        duplicates included, ends quietly."""
        call_id, user = event.get("call_id"), event.get("user")
        if not isinstance(call_id, str) or not isinstance(user, str):
            logger.warning("scheduled event ignored", extra={"outcome": "bad_scheduled_event"})
            return {"status": "ignored"}
        logger.append_keys(user=user)
        outcome = self.container.calls.scheduled_hangup(
            user, call_id, Deadline.from_lambda_context(context)
        )
        if outcome == "settled":
            metrics.add_metric(name="CallsEnded", unit=MetricUnit.Count, value=1)
        logger.info("scheduled hangup", extra={
            "outcome": f"call_{outcome.replace('-', '_')}", "call_id": call_id,
            "ended_by": "deadline",
        })  # fmt: skip
        return {"status": outcome, "call_id": call_id}


@functools.cache
def _openapi() -> bytes:
    """The API's description, read once per container (at its first request, not import)."""
    return OPENAPI_FILE.read_bytes()


def _is_scheduled_hangup(event: Any) -> bool:
    return (
        isinstance(event, dict)
        and event.get("action") == "hangup"
        and "requestContext" not in event
    )


def _call_request(request: Request) -> tuple[str, dict[str, Any], str | None]:
    """The offer, the `session` part and the `profile` query parameter of a call request:
    `application/sdp` (the raw offer) or `multipart/form-data` (`sdp`, optional `session`)."""
    for parameter in request.query:
        if parameter != "profile":
            raise InvalidRequest(
                f"the query parameter '{parameter}' is not allowed here", parameter
            )
    profile = request.query.get("profile")
    data = _body_bytes(request, MAX_CALL_BODY_BYTES)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not data.strip():
        raise InvalidRequest("the SDP offer is empty", "sdp")
    if media_type == "application/sdp":
        return _text(data, "sdp"), {}, profile
    if media_type != "multipart/form-data":
        raise UnsupportedMediaType("the body must be application/sdp or multipart/form-data")
    header = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
    message = BytesParser(policy=email_policy.HTTP).parsebytes(header + data)
    if not message.is_multipart():
        raise InvalidRequest("the multipart body could not be read", "sdp")
    parts: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or name not in ("sdp", "session"):
            raise InvalidRequest(f"the part '{name}' is not allowed here", str(name))
        if name in parts:
            raise InvalidRequest(f"the part '{name}' is given twice", name)
        payload = part.get_payload(decode=True)
        parts[name] = payload if isinstance(payload, bytes) else b""
    if "sdp" not in parts:
        raise InvalidRequest("the 'sdp' part is missing", "sdp")
    session: Any = {}
    if "session" in parts:
        try:
            session = json.loads(parts["session"])
        except (ValueError, RecursionError):
            raise InvalidRequest("the 'session' part is not valid JSON", "session") from None
        if not isinstance(session, dict):
            raise InvalidRequest("the 'session' part must be a JSON object", "session")
    return _text(parts["sdp"], "sdp"), session, profile


def _text(data: bytes, field_name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"the '{field_name}' part is not UTF-8 text", field_name) from None


def _body_bytes(request: Request, limit: int) -> bytes:
    if request.body is None:
        return b""
    try:
        data = (
            base64.b64decode(request.body, validate=True)
            if request.base64
            else request.body.encode()
        )
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidRequest("the body could not be decoded") from None
    if len(data) > limit:
        raise BodyTooLarge(f"the body must be at most {limit} bytes")
    return data


def _mapping(value: Any) -> dict[str, Any]:
    """Direct invocations can send anything: whatever is not a mapping is treated as empty."""
    return value if isinstance(value, dict) else {}


def _json_body(request: Request) -> dict[str, Any]:
    data = _body_bytes(request, MAX_BODY_BYTES)
    if not data.strip():
        return {}
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise UnsupportedMediaType("the body must be application/json")
    try:
        return json_object(data)
    except NotJson:
        raise InvalidRequest("the body is not valid JSON") from None
    except ValueError:  # NotAnObject
        raise InvalidRequest("the body must be a JSON object") from None


def _observe_failure(exc: TokenVendorError) -> None:
    """Expected outcomes: one log line (no stack trace) and one metric each."""
    if isinstance(exc, AuthError):
        metrics.add_dimension(name="reason", value=exc.reason)
        metrics.add_metric(name="AuthFailures", unit=MetricUnit.Count, value=1)
        logger.info("request refused", extra={"outcome": "unauthorized", "reason": exc.reason})
    elif isinstance(exc, CallLimitExceeded):
        metrics.add_metric(name="CallLimitRefusals", unit=MetricUnit.Count, value=1)
        logger.info(
            "call limit reached",
            extra={"outcome": "call_limit", "policy": exc.limit, "retry_after": exc.retry_after},
        )
    elif isinstance(exc, QuotaExceeded):
        metrics.add_metric(name="QuotaRefusals", unit=MetricUnit.Count, value=1)
        logger.info(
            "quota exhausted",
            extra={
                "outcome": "quota_exceeded",
                "policy": exc.violated,
                "retry_after": exc.retry_after,
            },
        )
    elif isinstance(exc, GlobalQuotaExceeded):
        metrics.add_metric(name="GlobalQuotaRefusals", unit=MetricUnit.Count, value=1)
        logger.warning(
            "global quota exhausted",
            extra={"outcome": "global_quota_exceeded", "policy": exc.violated,
                   "retry_after": exc.retry_after},
        )  # fmt: skip
    elif isinstance(exc, RequestError):
        metrics.add_metric(name="RequestsRefused", unit=MetricUnit.Count, value=1)
        logger.info(
            "request refused",
            extra={"outcome": "bad_request", "reason": str(exc), "field": exc.field},
        )
    elif isinstance(exc, DependencyError):
        metrics.add_dimension(name="dependency", value=exc.dependency)
        metrics.add_metric(name="UpstreamErrors", unit=MetricUnit.Count, value=1)
        # An unusable stored key, or 401 from OpenAI after a re-read: only the operator can act.
        alarming = isinstance(exc, DependencyMisconfigured) or exc.status == 401
        log = logger.error if alarming else logger.warning
        log(
            "dependency failed",
            extra={
                "outcome": type(exc).__name__,
                "dependency": exc.dependency,
                "reason": exc.reason,
            },
        )
    else:
        logger.error("refused", extra={"outcome": type(exc).__name__, "reason": str(exc)})


def _preflight(request: Request, origins: tuple[str, ...]) -> Response:
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


def _add_cors(response: Response, request: Request, origins: tuple[str, ...]) -> None:
    origin = request.headers.get("origin")
    response.headers["Vary"] = "Origin"
    if not origin or origin not in origins:
        return  # no Origin (a mobile app, curl) works; a foreign origin just gets no CORS grant
    response.headers["Access-Control-Allow-Origin"] = origin
    if request.method != "OPTIONS":
        response.headers["Access-Control-Expose-Headers"] = ", ".join(CORS_EXPOSE_HEADERS)
    elif "Access-Control-Allow-Methods" not in response.headers:
        del response.headers["Access-Control-Allow-Origin"]  # a refused preflight grants nothing


def create_handler(
    build: Callable[[], Container] = build_container,
) -> Callable[[Any, Any], dict[str, Any]]:
    return _wrap(TokenApi(build))


def _wrap(api: TokenApi) -> Callable[[Any, Any], dict[str, Any]]:
    @metrics.log_metrics(capture_cold_start_metric=True)
    @logger.inject_lambda_context(
        correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
    )
    def handler(event: Any, context: Any) -> dict[str, Any]:
        return api(event, context)

    return cast(Callable[[Any, Any], dict[str, Any]], handler)


def _register_snapstart_hooks(api: TokenApi) -> None:
    """With SnapStart, build clients before the snapshot and forget cached secrets after.

    The container makes no network call while being built, so the snapshot holds no open
    connection and no secret; after a restore the key set and the OpenAI key are read anew.
    """
    try:
        from snapshot_restore_py import (
            register_after_restore,
            register_before_snapshot,
        )
    except ImportError:  # not in Lambda, or SnapStart is off
        return
    register_before_snapshot(lambda: api.container)
    register_after_restore(lambda: api.container.forget_cached_secrets())


_api = TokenApi(lambda: build_container(log=logger))
_register_snapstart_hooks(_api)
handler = _wrap(_api)
