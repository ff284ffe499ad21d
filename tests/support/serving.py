"""An aiohttp application served on loopback from a thread, for the tools' tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager

from aiohttp import web

from devstack.net import free_port

START_TIMEOUT_S = 10


@contextmanager
def serving(make_app: Callable[[str], web.Application], port: int | None = None) -> Iterator[str]:
    """An aiohttp app on a (free) loopback port, in a thread, for the length of the tests.

    The app is set up and served inside its thread's own event loop: the calling thread may
    already run one (Playwright's sync API keeps a loop running in the browser tests' thread).
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(url))
    started: Future[None] = Future()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as error:  # the caller raises it
            started.set_exception(error)
            return
        started.set_result(None)
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        started.result(START_TIMEOUT_S)
        yield url
    finally:
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
