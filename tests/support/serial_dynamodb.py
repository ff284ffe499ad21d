"""A DynamoDB stand-in that serves one request at a time, like DynamoDB's per-item
serialisation: moto's app under werkzeug with no threads (moto's threaded server and its
in-process mock do not make conditional writes atomic under concurrency).

`python -m tests.support.serial_dynamodb PORT` prints "ready" once listening.
"""

from __future__ import annotations

import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server


def main() -> None:
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    # threaded=False, processes=1: one request at a time, and HTTP/1.0 (no idle keep-alive
    # connection can hold the single worker while other clients wait).
    server = make_server("127.0.0.1", port, app, threaded=False, processes=1)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
