"""moto's server with DynamoDB's atomicity: each request is handled whole before the next.

`python -m moto.server` runs requests on threads side by side, and moto's backends do not
lock: two concurrent `ADD` updates of one item (two call watchers charging one user's day at a
hand-over) can lose one. DynamoDB serialises writes to an item; this server serialises every
request (connections still run in parallel, so an idle keep-alive holds nothing).

`python -m devstack.moto_server -H 127.0.0.1 -p 3004`
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


class Serialised:
    """A WSGI app that runs one request (through to its last byte) at a time."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self._lock:
            # moto answers with small bodies: read them whole inside the lock.
            return list(self._app(environ, start_response))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=3004)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        Serialised(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
