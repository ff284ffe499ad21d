"""One loopback HTTP server that answers like DynamoDB, Secrets Manager, a JWKS host and
OpenAI, instantly. The benchmarks point the real function at it: real clients, real sockets,
no service latency, so what is measured is our process.

Run as `python -m bench.fake_services PORT JWKS_FILE`; it prints "ready" when serving.
It depends on the standard library only (and the emulator's schema, which does too), so it
runs in the function-only environment.
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from devstack.openai_schema import build_session

OPENAI_KEY = "sk-bench-" + "b" * 40


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real services offer
    jwks: bytes = b"{}"
    counts: ClassVar[dict[str, int]] = {}  # one server per process: the class holds its state

    def setup(self) -> None:
        super().setup()
        # Without this, a response sent in two writes waits on delayed ACKs (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def do_GET(self) -> None:
        if self.path == "/jwks.json":
            self._count("jwks")
            self._send(200, self.jwks)
        elif self.path == "/__counts":
            self._send(200, json.dumps(self.counts).encode())
        else:
            self._send(404, b"{}")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        target = self.headers.get("X-Amz-Target", "")
        if target.endswith("UpdateItem"):
            self._count("dynamodb")
            request = json.loads(body)
            attributes = {name: {"N": "1"} for name in request["ExpressionAttributeNames"].values()}
            self._send(
                200, json.dumps({"Attributes": attributes}).encode(), "application/x-amz-json-1.0"
            )
        elif target.endswith("GetSecretValue"):
            self._count("secretsmanager")
            reply: dict[str, Any] = {
                "ARN": "arn:aws:secretsmanager:us-east-1:1:secret:k",
                "Name": "k",
                "SecretString": OPENAI_KEY,
            }
            self._send(200, json.dumps(reply).encode(), "application/x-amz-json-1.1")
        elif self.path == "/v1/realtime/client_secrets":
            self._count("openai")
            request = json.loads(body)
            reply = {
                "value": "ek_" + secrets.token_hex(16),
                "expires_at": int(time.time()) + request["expires_after"]["seconds"],
                "session": build_session(request["session"]),  # OpenAI's full shape
            }
            self._send(200, json.dumps(reply).encode())
        else:
            self._send(404, b"{}")


def main() -> None:
    port, jwks_file = int(sys.argv[1]), Path(sys.argv[2])
    Handler.jwks = jwks_file.read_bytes()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
