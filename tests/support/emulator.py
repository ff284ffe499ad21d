"""The local OpenAI emulator on loopback, in a thread of its own, with a clock a test winds."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from aiohttp import web
from openai.types.shared import ErrorObject

from devstack.openai_emulator import create_app

KEY = "sk-emulator-test-" + "k" * 32  # the emulator's standard (server) key


class ShiftedClock:
    """Real time, moved on by `offset` seconds: the emulator's clock, which a test winds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Running:
    url: str
    clock: ShiftedClock

    @property
    def v1(self) -> str:
        return self.url + "/v1"


@contextlib.contextmanager
def emulator_thread(**options: Any) -> Iterator[Running]:
    # Its own loop and thread: the tests' WebRTC clients run on theirs, as a browser would.
    clock = ShiftedClock()
    app = create_app(KEY, clock=clock, **options)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, shutdown_timeout=2)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="openai-emulator", daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield Running(f"http://127.0.0.1:{runner.addresses[0][1]}", clock)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def server_headers(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"} | extra


def assert_error(
    response: httpx.Response, status: int, code: str | None, param: str | None = None
) -> ErrorObject:
    assert response.status_code == status, response.text
    assert response.headers["x-request-id"]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    error = ErrorObject.model_validate(body["error"])
    assert error.code == code, body
    if param is not None:
        assert error.param == param, body
    return error
