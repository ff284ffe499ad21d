"""One loopback HTTP server that answers like DynamoDB, Secrets Manager, EventBridge
Scheduler, Lambda's Invoke, a JWKS host and OpenAI (client secrets and calls; a call's
sideband WebSocket is refused, 403, as for a call the key may not watch), instantly. The
benchmarks point the real function at it: real clients, real sockets, no service latency, so
what is measured is our process.

It counts the requests per service (`GET /__counts`). For the critical path of a request,
`POST /__hold?ms=N` holds every later answer N ms and records each request's span
(`GET /__spans`: service, start, end): requests sent together overlap, serial ones do not.

Run as `python -m bench.fake_services PORT JWKS_FILE`; it prints "ready" when serving.
It depends on the standard library only (and the emulator's schema, which does too), so it
runs in the function-only environment.
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from devstack.openai_schema import build_session

OPENAI_KEY = "sk-bench-" + "b" * 40
ANSWER_SDP = (
    b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    b"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n"
)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real services offer
    jwks: bytes = b"{}"
    counts: ClassVar[dict[str, int]] = {}  # one server per process: the class holds its state
    hold_s: ClassVar[float] = 0.0
    spans: ClassVar[list[tuple[str, float, float]]] = []
    lock = threading.Lock()

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
        started = time.monotonic()
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1
        if self.hold_s:
            time.sleep(self.hold_s)
            with self.lock:
                self.spans.append((name, started, time.monotonic()))

    def do_GET(self) -> None:
        if self.path == "/jwks.json":
            self._count("jwks")
            self._send(200, self.jwks)
        elif self.path.startswith("/v1/realtime?call_id="):  # a call's sideband: refused
            self._count("sideband")
            self._send(403, json.dumps({"error": {"code": "bench_refused"}}).encode())
        elif self.path == "/__counts":
            self._send(200, json.dumps(self.counts).encode())
        elif self.path == "/__spans":
            self._send(200, json.dumps(self.spans).encode())
        else:
            self._send(404, b"{}")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        target = self.headers.get("X-Amz-Target", "")
        if self.path.startswith("/__hold?ms="):
            with self.lock:
                Handler.hold_s = int(self.path.rsplit("=", 1)[1]) / 1000
                Handler.spans = []
            self._send(200, b"{}")
        elif target.endswith("BatchGetItem"):  # the day's spend: nothing spent yet
            self._count("dynamodb")
            tables = json.loads(body)["RequestItems"]
            reply_items: dict[str, Any] = {
                "Responses": {name: [] for name in tables},
                "UnprocessedKeys": {},
            }
            self._send(200, json.dumps(reply_items).encode(), "application/x-amz-json-1.0")
        elif self.path.startswith("/schedules/"):  # Scheduler's CreateSchedule
            self._count("scheduler")
            name = self.path.split("/")[2].split("?")[0]
            arn = f"arn:aws:scheduler:us-east-1:1:schedule/g/{name}"
            self._send(200, json.dumps({"ScheduleArn": arn}).encode())
        elif self.path.startswith("/2015-03-31/functions/"):  # Lambda's Invoke, asynchronous
            self._count("lambda")
            self._send(202, b"")
        elif self.path == "/v1/realtime/calls":
            self._count("openai")
            call_id = "rtc_" + secrets.token_hex(12)
            self.send_response(201)
            self.send_header("Content-Type", "application/sdp")
            self.send_header("Location", f"/v1/realtime/calls/{call_id}")
            self.send_header("Content-Length", str(len(ANSWER_SDP)))
            self.end_headers()
            self.wfile.write(ANSWER_SDP)
        elif target.endswith("UpdateItem"):
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
