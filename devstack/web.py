"""The web page as S3 would serve it, plus the `config.json` a deploy writes beside it.

`python -m devstack.web --port 5173 --root web --config '{"apiBaseUrl": ...}'`
"""

from __future__ import annotations

import argparse
import json
import logging
import mimetypes
from pathlib import Path
from typing import Any

from aiohttp import web

from devstack.net import serve

ROOT = Path(__file__).resolve().parents[1]
# ES modules are refused by browsers unless served as JavaScript.
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")
CONFIG = web.AppKey("config", dict)
WEB_ROOT = web.AppKey("root", Path)


def create_app(root: Path, config: dict[str, Any]) -> web.Application:
    app = web.Application()
    app[WEB_ROOT] = root.resolve()
    app[CONFIG] = config
    app.router.add_get("/config.json", _config)
    app.router.add_get("/{path:.*}", _file)
    return app


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    serve(create_app(args.root, json.loads(args.config)), args.host, args.port, "web")


if __name__ == "__main__":
    main()
