"""A local stand-in for an API Gateway HTTP API in front of one Lambda function.

It does what the gateway does and nothing more: only the template's routes (others get
404 `{"message":"Not Found"}`), payload-format-2.0 events, the Lambda proxy result mapped
back to HTTP, and CORS answered by the gateway from the CorsConfiguration, overriding any
CORS header the function sets. The function runs in-process, one call at a time, like one
warm Lambda execution environment.

It also serves Lambda's own Invoke API (`POST /2015-03-31/functions/{name}/invocations`), so
what reaches the function without HTTP on AWS (the Scheduler's hangup events) reaches the same
handler here: boto3's lambda client with `endpoint_url` set to this server works.

`python -m devstack.apigw --port 3001 --function-dir functions`
(the function's settings come from this process's environment, read when it is imported).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib
import json
import logging
import os
import re
import sys
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web
from multidict import CIMultiDict

from devstack.lambda_events import ACCOUNT_ID, LambdaContext, function_arn, http_event
from devstack.net import serve

Handler = Callable[[dict[str, Any], Any], Any]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROUTES = ("POST /v1/realtime/client_secrets", "GET /openapi.json")
MAX_REQUEST_BYTES = 10 * 1024 * 1024  # HTTP API's payload limit
MAX_EVENT_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation limit
MAX_ASYNC_EVENT_BYTES = 1024 * 1024  # and its asynchronous one
INVOKE_PREFIX = "/2015-03-31/functions/"
INVOKE_SUFFIX = "/invocations"
# Response headers the gateway owns (hop-by-hop, or set from the body it sends).
DROPPED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
# HTTP API passes these bodies as text; everything else arrives base64-encoded.
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")

log = logging.getLogger("apigw")


@dataclass(frozen=True)
class Cors:
    """An HttpApi CorsConfiguration; origins come from the deployment (ALLOWED_ORIGINS)."""

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False

    @classmethod
    def from_configuration(cls, config: Mapping[str, Any], origins: Iterable[str]) -> Cors:
        # Accept CloudFormation's spelling (AllowHeaders) or a snake_case one (allow_headers).
        keys = {k.replace("_", "").lower(): v for k, v in config.items()}

        def listed(name: str) -> tuple[str, ...]:
            value = keys.get(name) or ()
            return tuple(str(v).strip() for v in ([value] if isinstance(value, str) else value))

        max_age = keys.get("maxage")
        return cls(
            allow_origins=tuple(origins),
            allow_methods=tuple(m.upper() for m in listed("allowmethods")),
            allow_headers=tuple(h.lower() for h in listed("allowheaders")),
            expose_headers=tuple(h.lower() for h in listed("exposeheaders")),
            max_age=None if max_age is None else int(max_age),
            allow_credentials=str(keys.get("allowcredentials", "")).lower() == "true",
        )

    def origin_allowed(self, origin: str | None) -> bool:
        return origin is not None and ("*" in self.allow_origins or origin in self.allow_origins)

    def _grant(self, origin: str) -> dict[str, str]:
        headers = {"access-control-allow-origin": "*" if "*" in self.allow_origins else origin}
        if self.allow_credentials:
            headers["access-control-allow-credentials"] = "true"
        return headers

    def preflight(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The gateway's own answer to OPTIONS: a grant only if everything asked is allowed."""
        origin = headers.get("origin")
        method = headers.get("access-control-request-method", "").upper()
        wanted = {
            h.strip().lower()
            for h in headers.get("access-control-request-headers", "").split(",")
            if h.strip()
        }
        method_ok = method and ("*" in self.allow_methods or method in self.allow_methods)
        headers_ok = "*" in self.allow_headers or wanted <= set(self.allow_headers)
        if not (self.origin_allowed(origin) and method_ok and headers_ok):
            return {}
        answer = self._grant(str(origin))
        answer["access-control-allow-methods"] = ",".join(self.allow_methods)
        if self.allow_headers:
            answer["access-control-allow-headers"] = ",".join(self.allow_headers)
        if self.max_age is not None:
            answer["access-control-max-age"] = str(self.max_age)
        return answer

    def actual(self, origin: str | None) -> dict[str, str]:
        if not self.origin_allowed(origin):
            return {}
        answer = self._grant(str(origin))
        if self.expose_headers:
            answer["access-control-expose-headers"] = ",".join(self.expose_headers)
        return answer


def load_handler(function_dir: Path, spec: str = "token_vendor.api.app.handler") -> Handler:
    """As Lambda does: the code directory on sys.path, then `module.attribute`."""
    module_name, _, attribute = spec.rpartition(".")
    sys.path.insert(0, str(function_dir.resolve()))
    handler = getattr(importlib.import_module(module_name), attribute)
    if not callable(handler):
        raise TypeError(f"{spec} is not callable")
    return handler  # type: ignore[no-any-return]


_PARAMETER = re.compile(r"\{([A-Za-z0-9_]+)(\+?)\}")


def match_route(routes: Iterable[str], method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The route key an HTTP API picks for a request, and its path parameters: `{name}`
    matches one path segment, `{name+}` the rest of the path; an exact route wins."""
    if f"{method} {path}" in routes:
        return f"{method} {path}", {}
    for route in sorted(routes, key=lambda r: r.count("{")):
        route_method, _, template = route.partition(" ")
        if route_method not in (method, "ANY"):
            continue
        pattern, end = "", 0
        for part in _PARAMETER.finditer(template):
            pattern += re.escape(template[end : part.start()])
            pattern += (
                f"(?P<{part.group(1)}>.+)" if part.group(2) else f"(?P<{part.group(1)}>[^/]+)"
            )
            end = part.end()
        found = re.fullmatch(pattern + re.escape(template[end:]), path)
        if found:
            return route, {k: unquote(v) for k, v in found.groupdict().items()}
    return None


def build_event(request: web.Request, body: bytes, request_id: str) -> dict[str, Any]:
    """A payload-format-2.0 event, shaped as the gateway shapes it."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    cookie = headers.pop("cookie", None)  # 2.0 moves cookies out of the headers
    query: dict[str, str] = {}
    raw_query = request.rel_url.raw_query_string
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    text = _as_text(body, headers.get("content-type", "")) if body else None
    encoded = bool(body) and text is None  # an empty body is left out of the event
    return http_event(
        request.method,
        request.path,
        headers,
        base64.b64encode(body).decode() if encoded else text,
        base64=encoded,
        raw_query=raw_query,
        query=query,
        cookies=[c.strip() for c in cookie.split(";") if c.strip()] if cookie else None,
        domain=headers.get("host", ""),
        source_ip=request.remote or "127.0.0.1",
        protocol=f"HTTP/{request.version.major}.{request.version.minor}",
        request_id=request_id,
        raw_path=request.rel_url.raw_path,
    )


def _as_text(body: bytes, content_type: str) -> str | None:
    media = content_type.split(";")[0].strip().lower()
    if not (media.startswith(TEXT_TYPES) or media.endswith(("+json", "+xml"))):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def to_response(result: Any, request_id: str, cors: dict[str, str]) -> web.Response:
    """The Lambda proxy result as HTTP; a result without statusCode is a 200 JSON body."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return _gateway_response(200, json.dumps(result), request_id, cors, "application/json")
    status = result["statusCode"]
    body = result.get("body") or ""
    if not isinstance(status, int) or not isinstance(body, str):
        log.error("malformed Lambda proxy response: %r", result)
        return _gateway_message(500, "Internal Server Error", request_id)
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    headers = CIMultiDict[str]()
    # Format 2.0 has no multiValueHeaders: the gateway ignores them, and so do we.
    for name, value in (result.get("headers") or {}).items():
        lowered = name.lower()
        # With a CorsConfiguration the gateway replaces the function's CORS headers.
        if lowered not in DROPPED_HEADERS and not lowered.startswith("access-control-"):
            headers[name] = str(value)
    for cookie in result.get("cookies") or ():
        headers.add("Set-Cookie", str(cookie))
    headers.update(cors)
    headers["apigw-requestid"] = request_id
    return web.Response(status=status, body=raw, headers=headers)


def _gateway_response(
    status: int, text: str, request_id: str, cors: Mapping[str, str], content_type: str
) -> web.Response:
    headers = {"Content-Type": content_type, "apigw-requestid": request_id, **cors}
    return web.Response(status=status, text=text, headers=headers)


def _gateway_message(status: int, message: str, request_id: str) -> web.Response:
    body = json.dumps({"message": message})
    return _gateway_response(status, body, request_id, {}, "application/json")


class FunctionTimedOut(Exception):
    """The handler ran past the function's timeout (not a TimeoutError the handler raised)."""


def _lambda_error(status: int, error_type: str, message: str, request_id: str) -> web.Response:
    """An error of Lambda's own API, as botocore parses it (x-amzn-ErrorType + message)."""
    headers = {"x-amzn-ErrorType": error_type, "x-amzn-RequestId": request_id}
    body = json.dumps({"Type": "User", "message": message})
    return web.Response(status=status, text=body, headers=headers, content_type="application/json")


def _function_error(exc: BaseException, request_id: str) -> dict[str, Any]:
    """The payload Lambda returns when the handler raised or ran out of time."""
    if isinstance(exc, FunctionTimedOut):
        return {"errorType": "Sandbox.Timedout", "errorMessage": f"RequestId: {request_id} {exc}"}
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


@dataclass
class Gateway:
    handler: Handler
    routes: frozenset[str]
    cors: Cors | None
    timeout: float = 10.0
    function_name: str = "TokenFunction"
    memory_mb: int = 512
    # The qualifiers the function answers to besides $LATEST: SAM's AutoPublishAlias.
    aliases: frozenset[str] = frozenset()
    # Execution environments: 1 runs one event at a time (the API's function, as one warm
    # environment); more run events side by side, as Lambda scales a function out (the call
    # watcher: one long invocation per live call, its successor beside it at a hand-over).
    concurrency: int = 1
    _executor: ThreadPoolExecutor = field(init=False)
    _lock: asyncio.Semaphore = field(init=False)
    _background: set[asyncio.Task[None]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        # The thread survives a timeout, as Lambda's would until it is frozen.
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="lambda")
        self._lock = asyncio.Semaphore(self.concurrency)

    @property
    def function_arn(self) -> str:
        return function_arn(self.function_name)

    async def handle(self, request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4())
        if request.path.startswith(INVOKE_PREFIX):
            return await self.invoke_api(request, request_id)
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and self.cors is not None:
            headers = {"apigw-requestid": request_id, **self.cors.preflight(request.headers)}
            return web.Response(status=204, headers=headers)
        matched = match_route(self.routes, request.method, request.rel_url.raw_path)
        if matched is None:
            return _gateway_message(404, "Not Found", request_id)
        route_key, path_parameters = matched
        body = await request.read()
        event = build_event(request, body, request_id)
        # The route the request matched, as the gateway names it (a template, not the path).
        event["routeKey"] = event["requestContext"]["routeKey"] = route_key
        if path_parameters:
            event["pathParameters"] = path_parameters
        if len(json.dumps(event)) > MAX_EVENT_BYTES:
            return _gateway_message(413, "Request Entity Too Large", request_id)
        # With AutoPublishAlias the gateway's integration names the alias.
        arn = self.function_arn + "".join(f":{a}" for a in sorted(self.aliases)[:1])
        try:
            result = await self._invoke(event, request_id, arn)
        except Exception:
            return _gateway_message(500, "Internal Server Error", request_id)
        return to_response(result, request_id, self.cors.actual(origin) if self.cors else {})

    # --- Lambda's Invoke API ---------------------------------------------------------------

    async def invoke_api(self, request: web.Request, request_id: str) -> web.Response:
        """`Invoke`, for callers that are not HTTP clients of the API (the Scheduler).

        Only a SigV4-signed request is served: a web page cannot send one across origins
        (this path grants no CORS), so no site the developer visits can invoke the function.
        The signature itself is not checked; moto does not check its own either.
        """
        name = unquote(request.path.removeprefix(INVOKE_PREFIX))
        if request.method != "POST" or not name.endswith(INVOKE_SUFFIX):
            return _lambda_error(404, "UnknownOperationException", "Unknown operation", request_id)
        if not request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 "):
            return _lambda_error(
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
                request_id,
            )
        name = name.removesuffix(INVOKE_SUFFIX)
        arn = self._resolve(name, request.query.get("Qualifier"))
        if arn is None:
            return _lambda_error(
                404, "ResourceNotFoundException", f"Function not found: {name}", request_id
            )
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind not in ("RequestResponse", "Event", "DryRun"):
            return _lambda_error(
                400,
                "InvalidParameterValueException",
                f"Invalid invocation type: {kind}",
                request_id,
            )
        body = await request.read()
        limit = MAX_ASYNC_EVENT_BYTES if kind == "Event" else MAX_EVENT_BYTES
        if len(body) > limit:
            return _lambda_error(
                413,
                "RequestTooLargeException",
                f"Request must be smaller than {limit} bytes for the Invoke operation",
                request_id,
            )
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            return _lambda_error(
                400,
                "InvalidRequestContentException",
                f"Could not parse request body into json: {exc}",
                request_id,
            )
        headers = {"x-amzn-RequestId": request_id, "X-Amz-Executed-Version": "$LATEST"}
        if kind == "DryRun":
            return web.Response(status=204, headers=headers)
        if kind == "Event":
            # Queued and run later, as Lambda's asynchronous invocation does; errors are logged.
            task = asyncio.ensure_future(self._invoke_quietly(event, request_id, arn))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return web.Response(status=202, headers=headers)
        try:
            result = await self._invoke(event, request_id, arn)
        except Exception as exc:
            headers["X-Amz-Function-Error"] = "Unhandled"
            result = _function_error(exc, request_id)
        try:
            payload = json.dumps(result)
        except (TypeError, ValueError) as exc:
            headers["X-Amz-Function-Error"] = "Unhandled"
            payload = json.dumps({"errorType": "Runtime.MarshalError", "errorMessage": str(exc)})
        return web.Response(
            status=200, text=payload, headers=headers, content_type="application/json"
        )

    def _resolve(self, name: str, qualifier: str | None) -> str | None:
        """The ARN invoked, if `name` (a name, partial or full ARN) is this function."""
        parts = name.split(":")
        base = self.function_arn
        if len(parts) in (1, 2):  # name, name:qualifier
            named, qualifier = parts[0], (parts[1] if len(parts) == 2 else qualifier)
        elif len(parts) in (3, 4) and parts[1] == "function":  # account:function:name[:q]
            named = parts[2] if parts[0] == ACCOUNT_ID else ""
            qualifier = parts[3] if len(parts) == 4 else qualifier
        elif len(parts) in (7, 8) and ":".join(parts[:7]) == base:  # the full ARN[:q]
            named = self.function_name
            qualifier = parts[7] if len(parts) == 8 else qualifier
        else:
            return None
        if named != self.function_name:
            return None
        if qualifier in (None, "$LATEST") or qualifier in self.aliases:
            return base if qualifier is None else f"{base}:{qualifier}"
        return None

    async def _invoke_quietly(self, event: dict[str, Any], request_id: str, arn: str) -> None:
        with contextlib.suppress(Exception):  # _call has already written the error to the log
            await self._invoke(event, request_id, arn)

    async def _invoke(self, event: dict[str, Any], request_id: str, arn: str = "") -> Any:
        loop = asyncio.get_running_loop()
        async with self._lock:  # the clock starts when the environment takes the event
            context = LambdaContext(
                int(self.timeout * 1000),
                aws_request_id=request_id,
                function_name=self.function_name,
                memory_limit_in_mb=self.memory_mb,
                invoked_function_arn=arn or None,
            )
            call = loop.run_in_executor(self._executor, self._call, event, context)
            done, _ = await asyncio.wait({call}, timeout=self.timeout)
            if not done:
                log.error("%s Task timed out after %.2f seconds", request_id, self.timeout)
                raise FunctionTimedOut(f"Task timed out after {self.timeout:.2f} seconds")
            return call.result()

    def _call(self, event: dict[str, Any], context: LambdaContext) -> Any:
        try:
            return self.handler(event, context)
        except Exception as exc:
            # What Lambda writes for an unhandled error, so it shows in the developer's log.
            error = {"errorMessage": str(exc), "errorType": type(exc).__name__}
            error["stackTrace"] = traceback.format_exc()
            print(json.dumps(error), file=sys.stderr, flush=True)
            raise


def create_app(
    handler: Handler,
    *,
    routes: Sequence[str] = DEFAULT_ROUTES,
    cors: Cors | None = None,
    timeout: float = 10.0,
    function_name: str = "TokenFunction",
    memory_mb: int = 512,
    aliases: Iterable[str] = (),
    concurrency: int = 1,
) -> web.Application:
    gateway = Gateway(
        handler,
        frozenset(routes),
        cors,
        timeout,
        function_name,
        memory_mb,
        frozenset(aliases),
        concurrency,
    )
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app.router.add_route("*", "/{path:.*}", gateway.handle)
    app.on_cleanup.append(lambda _: _shutdown(gateway))
    return app


async def _shutdown(gateway: Gateway) -> None:
    for task in list(gateway._background):
        task.cancel()
    gateway._executor.shutdown(wait=False, cancel_futures=True)


def template_routes(template: Mapping[str, Any]) -> tuple[str, ...]:
    """`METHOD /path` for every route of a SAM template: HttpApi events of functions, and
    AWS::ApiGatewayV2::Route resources (their RouteKey)."""
    routes = []
    for resource in (template.get("Resources") or {}).values():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::ApiGatewayV2::Route":
            routes.append(str(props.get("RouteKey")))
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in (props.get("Events") or {}).values():
            if event.get("Type") == "HttpApi":
                event_props = event.get("Properties") or {}
                routes.append(
                    f"{str(event_props.get('Method', 'ANY')).upper()} {event_props.get('Path')}"
                )
    return tuple(routes)


def template_aliases(template: Mapping[str, Any]) -> tuple[str, ...]:
    """The AutoPublishAlias of the template's functions: qualifiers Invoke accepts."""
    return tuple(
        str(resource["Properties"]["AutoPublishAlias"])
        for resource in (template.get("Resources") or {}).values()
        if resource.get("Type") == "AWS::Serverless::Function"
        and "AutoPublishAlias" in (resource.get("Properties") or {})
    )


def from_template(
    template_path: Path, origins: Iterable[str]
) -> tuple[tuple[str, ...], Cors | None, tuple[str, ...]]:
    """Routes, CORS and aliases as the template declares them; origins as deployed."""
    from devstack.template import cors_configuration, load_template

    template = load_template(template_path)
    config = cors_configuration(template)
    cors = None if config is None else Cors.from_configuration(config, origins)
    return template_routes(template) or DEFAULT_ROUTES, cors, template_aliases(template)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument("--function-dir", type=Path, default=ROOT / "functions")
    parser.add_argument(
        "--handler", default="token_vendor.api.app.handler", help="package.module.attribute"
    )
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--timeout", type=float, default=10.0, help="the function's, seconds")
    parser.add_argument("--function-name", default="TokenFunction")
    parser.add_argument("--memory", type=int, default=512, help="the function's MemorySize, MB")
    parser.add_argument(
        "--invoke-only",
        action="store_true",
        help="serve only Lambda's Invoke API (a function without HTTP routes)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="events run side by side (environments)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    origins = [o.strip() for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o.strip()]
    routes, cors, aliases = from_template(args.template, origins)
    if args.invoke_only:
        routes, cors = (), None
    # Imported before serving, as Lambda's init phase: a broken function fails the start.
    handler = load_handler(args.function_dir, args.handler)
    app = create_app(
        handler,
        routes=routes,
        cors=cors,
        timeout=args.timeout,
        function_name=args.function_name,
        memory_mb=args.memory,
        aliases=aliases,
        concurrency=max(args.concurrency, 1),
    )
    serve(app, args.host, args.port, "api")


if __name__ == "__main__":
    main()
