"""The web page as CloudFront would serve it: the files as S3 holds them, the `config.json` a
deploy writes beside it, the API under the same origin (`/v1/*`, `/openapi.json`, proxied
uncached with every header but Host, like the distribution's API behaviours, plus the `api`
origin's custom headers: the door's secret, read from the local moto as CloudFormation reads
it), and on every response the security headers of template.yaml's response-headers policy,
computed for the local URLs (devstack/cloudfront.py). Every browser test so runs under the
production CSP, and through the API's one door.

`python -m devstack.web --port 5173 --root web --config '{"apiBaseUrl": ...}'
    --api-url http://127.0.0.1:3001 --parameter AuthIssuer=http://127.0.0.1:3002 ...
    --aws-endpoint http://127.0.0.1:3004 --resource OriginVerifySecret=devstack/origin-verify`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import mimetypes
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from devstack.aws import secret_resolver
from devstack.cloudfront import Deployment, origin_headers, response_headers
from devstack.net import serve
from devstack.template import TEMPLATE, load_template

ROOT = Path(__file__).resolve().parents[1]
# ES modules are refused by browsers unless served as JavaScript.
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")
CONFIG = web.AppKey("config", dict)
WEB_ROOT = web.AppKey("root", Path)
HEADERS = web.AppKey("headers", dict)
API_URL = web.AppKey("api_url", str)
API_SESSION = web.AppKey("api_session", aiohttp.ClientSession)
ORIGIN = web.AppKey("origin", str)
# The `api` origin's custom headers: computed once, at the first request that needs them
# (the local moto holds the secret only once the stack has provisioned it).
ORIGIN_HEADERS: web.AppKey[Callable[[], dict[str, str]]] = web.AppKey("origin_headers")
_ORIGIN_CACHE = web.AppKey("origin_cache", dict)
# The distribution's API behaviours (template.yaml, CacheBehaviors).
API_PATHS = ("/v1/", "/openapi.json")
# Hop-by-hop headers and those the proxy itself rewrites.
_NOT_FORWARDED = {
    "host", "connection", "keep-alive", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "accept-encoding",
}  # fmt: skip
_NOT_RETURNED = {"connection", "keep-alive", "transfer-encoding", "content-length",
                 "content-encoding", "date", "server"}  # fmt: skip


def create_app(
    root: Path,
    config: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    api_url: str | None = None,
    origin: str | None = None,
    api_origin_headers: Callable[[], dict[str, str]] | None = None,
) -> web.Application:
    """`origin`: the page's one origin (its sign-in redirect and CORS name it); a request for
    another name of the same server (127.0.0.1 for localhost) is sent there.
    `api_origin_headers`: what the distribution adds to every request it forwards to the API
    (called once, at the first)."""
    app = web.Application(middlewares=[_one_origin, _security_headers])
    app[ORIGIN_HEADERS] = api_origin_headers or dict
    app[_ORIGIN_CACHE] = {}
    app[ORIGIN] = urlsplit(origin).netloc if origin else ""
    app[WEB_ROOT] = root.resolve()
    app[CONFIG] = config
    app[HEADERS] = dict(headers or {})
    app.router.add_get("/config.json", _config)
    if api_url:
        app[API_URL] = api_url.rstrip("/")
        app.cleanup_ctx.append(_api_session)
        app.router.add_route("*", "/v1/{path:.*}", _proxy)
        app.router.add_route("*", "/openapi.json", _proxy)
    app.router.add_get("/{path:.*}", _file)
    return app


@web.middleware
async def _one_origin(request: web.Request, handler: Any) -> web.StreamResponse:
    """The identity provider sends the user back to one redirect URI, and a page opened on
    another name of this server (http://127.0.0.1:5173 for http://localhost:5173) would be a
    different origin whose sign-in fails: every such request is redirected (308: a POST stays
    a POST) to the same path on the page's own origin."""
    wanted = request.app[ORIGIN]
    if wanted and request.host != wanted:
        raise web.HTTPPermanentRedirect(f"http://{wanted}{request.rel_url.raw_path_qs}")
    response: web.StreamResponse = await handler(request)
    return response


@web.middleware
async def _security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    """The response-headers policy: on every answer (errors too), overriding the origin's."""
    response: web.StreamResponse
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    response.headers.update(request.app[HEADERS])
    if isinstance(response, web.HTTPException):
        raise response
    return response


async def _api_session(app: web.Application) -> Any:
    # No cookie jar, no redirects followed, no decompression: the answer goes back as sent.
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
    ) as session:
        app[API_SESSION] = session
        yield


async def _added_headers(app: web.Application) -> dict[str, str]:
    cache = app[_ORIGIN_CACHE]
    if "headers" not in cache:
        cache["headers"] = await asyncio.to_thread(app[ORIGIN_HEADERS])
    return dict(cache["headers"])


async def _proxy(request: web.Request) -> web.Response:
    """CachingDisabled + AllViewerExceptHostHeader: every viewer header but Host goes on, and
    the origin's custom headers replace any the viewer sent under the same names."""
    try:
        added = await _added_headers(request.app)
    except Exception as exc:  # CloudFormation would not have deployed the distribution
        logging.getLogger("web").error("the API origin's headers: %s", type(exc).__name__)
        return web.Response(status=502, text="the distribution's origin headers are unresolved\n")
    names = {name.lower() for name in added}
    headers = {
        k: v
        for k, v in request.headers.items()
        if k.lower() not in _NOT_FORWARDED and k.lower() not in names
    } | added
    url = request.app[API_URL] + request.rel_url.raw_path_qs
    body = await request.read()
    try:
        async with request.app[API_SESSION].request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            content = await upstream.read()
            returned = {k: v for k, v in upstream.headers.items() if k.lower() not in _NOT_RETURNED}
            return web.Response(status=upstream.status, body=content, headers=returned)
    except aiohttp.ClientError:
        return web.Response(status=502, text="the API did not answer\n")


async def _config(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONFIG], headers={"Cache-Control": "no-store"})


async def _file(request: web.Request) -> web.StreamResponse:
    root = request.app[WEB_ROOT]
    target = (root / request.match_info["path"]).resolve()
    if not target.is_relative_to(root):  # no ../ out of web/
        raise web.HTTPNotFound()
    if target.is_dir():
        target = target / "index.html"
    if target.is_file():
        # no-store: the developer edits web/ and reloads; a cached module would hide the edit.
        return web.FileResponse(target, headers={"Cache-Control": "no-store"})
    raise web.HTTPNotFound()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=5173)
    parser.add_argument("--root", type=Path, default=ROOT / "web")
    parser.add_argument("--config", default="{}", help="the config.json document")
    parser.add_argument("--api-url", help="serve /v1/* and /openapi.json from this API")
    parser.add_argument("--origin", help="the page's one origin: other names redirect there")
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template parameter for the security headers (AuthIssuer, OpenAIBaseUrl, ...)",
    )
    parser.add_argument(
        "--resource",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="what a template resource's Ref is here (OriginVerifySecret=its secret's id)",
    )
    parser.add_argument("--aws-endpoint", help="the moto that holds the stack's secrets")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    template = load_template(args.template)
    deployment = Deployment(
        parameters=dict(p.split("=", 1) for p in args.parameter),
        resources=dict(r.split("=", 1) for r in args.resource),
    )
    endpoint = args.aws_endpoint
    app = create_app(
        args.root,
        json.loads(args.config),
        headers=response_headers(deployment, template),
        api_url=args.api_url,
        origin=args.origin,
        api_origin_headers=lambda: origin_headers(
            deployment, secret_resolver(endpoint) if endpoint else _no_secrets, template
        ),
    )
    serve(app, args.host, args.port, "web")


def _no_secrets(reference: Any) -> str:
    raise LookupError(f"no --aws-endpoint to resolve the secret {reference.secret_id!r}")


if __name__ == "__main__":
    main()
