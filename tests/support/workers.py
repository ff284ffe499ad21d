"""The function inside a worker process of the concurrency batteries: each process imports its
own copy, as each Lambda environment does."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.env import ROOT


def function_in_worker(
    env: dict[str, str],
    jwks: dict[str, Any],
    openai: Callable[[httpx.Request], httpx.Response],
) -> tuple[Any, Any, httpx.Client]:
    """The function's `app` and `deps` modules configured by `env`, its log silenced (thousands
    of requests), and an httpx client on which the key set answers `jwks` and every other
    request goes to `openai`."""
    sys.path.insert(0, str(ROOT / "functions"))
    os.environ.update(env)
    from token_vendor.api import app, deps

    log_handler = app.logger.registered_handler
    assert isinstance(log_handler, logging.StreamHandler)
    log_handler.setStream(open(os.devnull, "w"))  # noqa: SIM115

    def upstream(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("jwks.json"):
            return httpx.Response(200, json=jwks)
        return openai(request)

    return app, deps, httpx.Client(transport=httpx.MockTransport(upstream))
