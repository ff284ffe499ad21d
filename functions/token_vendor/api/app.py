"""Lambda entry point: an API Gateway HTTP API (payload 2.0) event in, a response out.

Routing and the outcome log live here (the request's parts and CORS in `http`, bodies in
`bodies`); decisions live in `mint` and `calls`.
A small router instead of Powertools' resolver: a handful of routes do not justify ~70 ms of
imports on every cold start (see docs/performance.md). The same function also receives one
non-HTTP event, the scheduled hangup of a call (`{"action": "hangup", ...}`, from
EventBridge Scheduler); the handler tells the two apart by the event's shape.
"""

from __future__ import annotations

import functools
import os
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from ..core.deadline import Deadline
from ..core.echo import bounded_trace
from ..core.errors import ConfigError, TokenVendorError
from ..core.ids import CALL_ID, CallId, UserId
from .auth import Caller, bearer_token
from .bodies import call_request, json_body, live_request
from .deps import Container, build_container
from .door import HEADER as DOOR_HEADER
from .http import Request, Response, add_cors, preflight
from .plans import Plan
from .problems import (
    method_not_allowed,
    not_found,
    outcome_for,
    problem_for,
    ratelimit_headers,
)

CLIENT_SECRETS_PATH = "/v1/realtime/client_secrets"
CALLS_PATH = "/v1/realtime/calls"
LIVE_PATH = "/v1/live/sessions"
# The owner's hangup: of a Realtime call, or of a GPT-Live session (either route ends either).
# Only an id this service could have handed out: anything else is an unknown path (404), read
# no further.
HANGUP_PATH = re.compile(rf"/v1/(?:realtime/calls|live/sessions)/({CALL_ID.pattern})/hangup")
OPENAPI_PATH = "/openapi.json"
OPENAPI_FILE = Path(__file__).with_name("openapi.json")

# Routes other than the mint publish no metric; Powertools would warn on each of them.
warnings.filterwarnings("ignore", message="No application metrics to publish")
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "token-vendor"))
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "RealtimeTokenVendor"),
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "token-vendor"),
)


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
        if _is_scheduled(event):
            return self._scheduled(event, context)
        request = Request(method="", path="", headers={}, body=None, base64=False)
        origins: tuple[str, ...] = ()
        try:
            request = Request.from_event(event)
            origins = self.container.settings.allowed_origins
            response = self._refused_at_door(request) or self._route(request, context)
        except Exception as exc:  # the last line of defence: a problem document, never a trace
            # Counted, so the UnexpectedErrors alarm sees what no other metric would.
            metrics.add_metric(name="UnexpectedErrors", unit=MetricUnit.Count, value=1)
            # Bounded, not logger.exception: a deep recursion's traceback is hundreds of KB on
            # one line, paid for by whoever can make it happen again.
            logger.error("unexpected failure", extra={
                "error": type(exc).__name__, "trace": bounded_trace(exc),
            })  # fmt: skip
            response = Response.problem(problem_for(exc))
        add_cors(response, request, origins)
        return response.to_lambda()

    def _refused_at_door(self, request: Request) -> Response | None:
        """Before anything else: a request that skipped the page's distribution (so WAF never
        saw it) is refused before its token is read, its quota counted or OpenAI called."""
        try:
            self.container.door.check(request.headers.get(DOOR_HEADER))
        except TokenVendorError as exc:
            return _refused(exc)
        return None

    def _route(self, request: Request, context: Any) -> Response:
        if request.path == CLIENT_SECRETS_PATH:
            if request.method == "POST":
                return self._mint(request, context)
            if request.method == "OPTIONS":
                return preflight(request, self.container.settings.allowed_origins)
            return Response.problem(method_not_allowed("POST"))
        if request.path == CALLS_PATH:
            if request.method == "POST":
                return self._place_call(request, context)
            if request.method == "GET":
                return self._list_calls(request, context)
            if request.method == "OPTIONS":
                return preflight(request, self.container.settings.allowed_origins)
            return Response.problem(method_not_allowed("GET, POST"))
        if request.path == LIVE_PATH:
            if request.method == "POST":
                return self._place_call(request, context, live=True)
            if request.method == "OPTIONS":
                return preflight(request, self.container.settings.allowed_origins)
            return Response.problem(method_not_allowed("POST"))
        if hangup := HANGUP_PATH.fullmatch(request.path):
            if request.method == "POST":
                return self._hang_up(request, context, CallId(hangup.group(1)))
            if request.method == "OPTIONS":
                return preflight(request, self.container.settings.allowed_origins)
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

    def _plan(self, caller: Caller) -> Plan:
        """The caller's plan, from their token's claim (api.plans), tagged on the log lines."""
        plan = self.container.plan_of(caller)
        logger.append_keys(plan=plan.name)
        return plan

    def _mint(self, request: Request, context: Any) -> Response:
        started = time.monotonic()
        deadline = Deadline.from_lambda_context(context)
        vendor = self.container.vendor
        try:
            caller = self._caller(request, deadline)
            vendor = self.container.vendor_for(self._plan(caller))
            minted = vendor.mint(caller, json_body(request), deadline)
        except TokenVendorError as exc:
            return _refused(exc)
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

    def _place_call(self, request: Request, context: Any, live: bool = False) -> Response:
        started = time.monotonic()
        deadline = Deadline.from_lambda_context(context)
        container = self.container
        arn = str(getattr(context, "invoked_function_arn", ""))
        try:
            caller = self._caller(request, deadline)
            if live:
                body, profile = live_request(request)
            else:
                sdp, session, profile = call_request(request)
            if missing := container.settings.calls_problems():
                raise ConfigError(missing)
            calls = container.calls_for(self._plan(caller))
            if live:
                placed = calls.place_live(caller, body, profile, arn, deadline)
            else:
                placed = calls.place(caller, sdp, session, profile, arn, deadline)
        except TokenVendorError as exc:
            return _refused(exc, "the Live session" if live else "the call")
        reservation, upstream = placed.reservation, placed.call.upstream
        metrics.add_metric(name="CallsPlaced", unit=MetricUnit.Count, value=1)
        if placed.watched is False:
            # Answered before its watcher held the call (a cold watcher, or a sideband OpenAI
            # does not open before the media connects): the window the docs bound, counted.
            metrics.add_metric(name="CallsAnsweredUnwatched", unit=MetricUnit.Count, value=1)
        metrics.add_metric(
            name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=upstream.seconds * 1000
        )
        logger.info("call placed", extra={
            "outcome": "call_placed", "call_id": placed.call.call_id,
            "profile": placed.plan.profile.name, "model": placed.plan.model,
            "ends_at": reservation.ends_at, "reserved_seconds": reservation.seconds,
            "upstream_request_id": upstream.request_id, "watched": placed.watched,
            "duration_ms": round((time.monotonic() - started) * 1000),
        })  # fmt: skip
        headers = {
            "Location": placed.location,
            "Cache-Control": "no-store",
            "Call-Ends-At": str(reservation.ends_at),
            "Call-Minutes-Left": str(reservation.minutes_left),
        } | ratelimit_headers(placed.windows)
        if live:  # OpenAI's own answer to a Live create
            answer = {
                "session": {"id": placed.call.call_id},
                "transport": {"type": "webrtc", "sdp": placed.call.answer_sdp},
            }
            return Response.json(201, answer, headers=headers)
        headers["Content-Type"] = "application/sdp"
        return Response(201, placed.call.answer_sdp.encode(), headers)

    def _hang_up(self, request: Request, context: Any, call_id: CallId) -> Response:
        deadline = Deadline.from_lambda_context(context)
        container = self.container
        try:
            caller = self._caller(request, deadline)
            grant = container.route_quotas.consume(caller.user_hash, "hangup", deadline)
            ended = container.calls_for(self._plan(caller)).hang_up(caller, call_id, deadline)
        except TokenVendorError as exc:
            return _refused(exc, "the hangup")
        # Imported at the first hangup: a mint never runs the calls module.
        from .calls import ended_body

        if ended.settled:
            metrics.add_metric(name="CallsEnded", unit=MetricUnit.Count, value=1)
        logger.info("call hung up", extra={
            "outcome": "call_ended" if ended.settled else "call_already_ended",
            # Why it ended (the owner's `hangup`, or the line, the deadline, ... first): the
            # route is the owner's, but a repeated or late hangup did not end the call.
            "call_id": call_id, "end_reason": ended.reason.value,
        })  # fmt: skip
        headers = {"Cache-Control": "no-store"} | ratelimit_headers(grant.windows)
        return Response.json(200, ended_body(ended), headers=headers)

    def _list_calls(self, request: Request, context: Any) -> Response:
        deadline = Deadline.from_lambda_context(context)
        container = self.container
        try:
            caller = self._caller(request, deadline)
            grant = container.route_quotas.consume(caller.user_hash, "list", deadline)
            listing = container.calls_for(self._plan(caller)).list(caller, deadline)
        except TokenVendorError as exc:
            return _refused(exc)
        headers = {"Cache-Control": "no-store"} | ratelimit_headers(grant.windows)
        return Response.json(200, listing, headers=headers)

    def _scheduled(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """EventBridge Scheduler's invocations: a call's deadline (`hangup`) and its backstop
        (`backstop`). A failure to reach OpenAI raises, so the invocation is retried (the
        target's RetryPolicy, then Lambda's), and what is still not delivered lands in the
        dead-letter queue; everything else, duplicates included, ends quietly."""
        call_id, user = event.get("call_id"), event.get("user")
        family = event.get("api", "realtime")
        if (
            not isinstance(call_id, str)
            or not isinstance(user, str)
            or family not in ("realtime", "live")
        ):
            logger.warning("scheduled event ignored", extra={"outcome": "bad_scheduled_event"})
            return {"status": "ignored"}
        logger.append_keys(user=user)
        calls, deadline = self.container.calls, Deadline.from_lambda_context(context)
        who, which = UserId(user), CallId(call_id)
        if event["action"] == "backstop":
            outcome = calls.backstop(user=who, call_id=which, deadline=deadline, family=family)
            if outcome in ("ended", "allowed"):
                metrics.add_dimension(name="outcome", value=outcome)
                metrics.add_metric(name="CallsUnwatched", unit=MetricUnit.Count, value=1)
        else:
            ending = calls.scheduled_hangup(
                user=who, call_id=which, deadline=deadline, family=family
            )
            outcome = "settled" if ending.settled else "already-ended"
            if outcome == "settled":
                metrics.add_metric(name="CallsEnded", unit=MetricUnit.Count, value=1)
        logger.info(f"scheduled {event['action']}", extra={
            "outcome": f"call_{outcome.replace('-', '_')}", "call_id": call_id,
        })  # fmt: skip
        return {"status": outcome, "call_id": call_id}


def _refused(error: TokenVendorError, product: str = "a usable client secret") -> Response:
    """An expected refusal: its problem document, one log line and one metric (the table in
    `problems.outcome_for`)."""
    outcome = outcome_for(error)
    if outcome.dimension is not None:
        metrics.add_dimension(name=outcome.dimension[0], value=outcome.dimension[1])
    metrics.add_metric(name=outcome.metric, unit=MetricUnit.Count, value=1)
    getattr(logger, outcome.level)(outcome.message, extra=outcome.fields)
    return Response.problem(problem_for(error, product))


@functools.cache
def _openapi() -> bytes:
    """The API's description, read once per container (at its first request, not import)."""
    return OPENAPI_FILE.read_bytes()


def _is_scheduled(event: Any) -> bool:
    return (
        isinstance(event, dict)
        and event.get("action") in ("hangup", "backstop")
        and "requestContext" not in event
    )


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
    # Every client the function will use, the calls routes' too (built lazily otherwise).
    register_before_snapshot(lambda: api.container.complete())
    register_after_restore(lambda: api.container.forget_cached_secrets())


_api = TokenApi(lambda: build_container(log=logger))
_register_snapstart_hooks(_api)
handler = _wrap(_api)
