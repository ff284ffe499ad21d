"""The SDK test page (tests/e2e/sdk/): OpenAI's Agents SDK and `openai` package bundled with the
page's code by esbuild (all three pinned in package-lock.json), served from an origin of its
own on loopback under a CSP like production's, as a third-party app calling the API would be.

The product page (web/) stays free of dependencies and of a build step; only this test page
bundles anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

from devstack.cloudfront import local_deployment, response_headers
from devstack.net import free_port
from devstack.stack import Stack
from devstack.web import create_app
from tests.support.env import ROOT
from tests.support.serving import serving

SOURCE = ROOT / "tests" / "e2e" / "sdk"
ESBUILD = ROOT / "node_modules" / ".bin" / "esbuild"
SDK_PACKAGE = ROOT / "node_modules" / "@openai" / "agents-realtime" / "package.json"
BUILD_TIMEOUT_S = 120


def missing() -> str | None:
    """Why the page cannot be built here, or None."""
    if not ESBUILD.is_file() or not SDK_PACKAGE.is_file():
        return "the SDKs and esbuild are not installed: run `npm ci` (make test does)"
    return None


MODULES = ("app", "eval-probe")  # each bundled into <name>.js, which a page of SOURCE loads


def build(out: Path) -> Path:
    """The pages and their bundled modules in `out`. ES modules, for browsers only: what the
    SDKs' `browser` export conditions choose, nothing of Node's."""
    out.mkdir(parents=True, exist_ok=True)
    for page in SOURCE.glob("*.html"):
        shutil.copy(page, out / page.name)
    subprocess.run(
        [
            str(ESBUILD),
            *(str(SOURCE / f"{name}.mjs") for name in MODULES),
            "--bundle",
            "--format=esm",
            "--platform=browser",
            "--target=chrome120",
            "--log-level=warning",
            f"--outdir={out}",
        ],
        cwd=ROOT,
        check=True,
        timeout=BUILD_TIMEOUT_S,
        env=os.environ | {"NODE_ENV": "production"},
    )
    return out


def api_url(stack: Stack) -> str:
    """Where an app calls the API: the stack's `ApiUrl`, the page's distribution (locally the
    web server, which forwards /v1/* with the door's secret); the API's own URL refuses it."""
    return stack.urls["web"]


def app_headers(stack: Stack) -> dict[str, str]:
    """Production's security headers for the stack's URLs, with the API's URL added to
    `connect-src`: the product page reaches the API on its own origin, an app on another
    origin names the API's (docs/clients.md)."""
    headers = response_headers(local_deployment(stack.urls["issuer"], stack.urls["openai"]))
    policy = headers["Content-Security-Policy"]
    directives = [d.strip() for d in policy.split(";")]
    headers["Content-Security-Policy"] = "; ".join(
        f"{d} {api_url(stack)}" if d.startswith("connect-src ") else d for d in directives
    )
    return headers


def reserve_origin() -> str:
    """The page's origin, chosen before the stack starts: the API must allow it (CORS)."""
    return f"http://127.0.0.1:{free_port()}"


@contextmanager
def serve_page(root: Path, stack: Stack, origin: str) -> Iterator[str]:
    """The built page at `origin`, through the local stack's own web server code (the same
    files-and-headers path as the product page), with `app_headers`."""
    port = int(origin.rsplit(":", 1)[1])
    headers = app_headers(stack)

    def make(url: str) -> web.Application:
        return create_app(root, {}, headers=headers, origin=url)

    with serving(make, port) as url:
        yield url
