"""The web page as CloudFront would serve it: the files as S3 holds them, the `config.json` a
deploy writes beside it, the API under the same origin (`/v1/*`, `/openapi.json`, proxied
uncached with every header but Host, like the distribution's API behaviours), and on every
response the security headers of template.yaml's response-headers policy, computed for the
local URLs (devstack/cloudfront.py). Every browser test so runs under the production CSP.

`python -m devstack.web --port 5173 --root web --config '{"apiBaseUrl": ...}'
    --api-url http://127.0.0.1:3001 --parameter AuthIssuer=http://127.0.0.1:3002 ...`
"""

from __future__ import annotations

import argparse
import json
import logging
import mimetypes
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from devstack.cloudfront import Deployment, response_headers
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
) -> web.Application:
    app = web.Application(middlewares=[_security_headers])
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


async def _proxy(request: web.Request) -> web.Response:
    """CachingDisabled + AllViewerExceptHostHeader: every viewer header but Host goes on."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
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
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template parameter for the security headers (AuthIssuer, OpenAIBaseUrl, ...)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parameters = dict(p.split("=", 1) for p in args.parameter)
    headers = response_headers(Deployment(parameters=parameters), load_template(args.template))
    app = create_app(args.root, json.loads(args.config), headers=headers, api_url=args.api_url)
    serve(app, args.host, args.port, "web")


if __name__ == "__main__":
    main()
