"""Ports and serving for the local stack's processes: pick, check, wait, run.

Every server of the stack runs through `serve`, so a busy port reads the same everywhere:
one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import sys
import time

from aiohttp import web

EXIT_PORT_BUSY = 2
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class PortBusy(Exception):
    def __init__(self, name: str, host: str, port: int, hint: str = "") -> None:
        self.name, self.host, self.port = name, host, port
        super().__init__(f"port {port} ({name}) is already in use on {host}{hint}")


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free now (another process may still take it before us)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Binds every address `host` resolves to, as the server will (localhost may be two)."""
    for family, _, _, _, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # The servers set SO_REUSEADDR too: a port in TIME_WAIT is free for them.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address[:2])
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return False
                if exc.errno != errno.EADDRNOTAVAIL:  # no IPv6 on this machine: not busy
                    raise
    return True


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if port_accepts(host, port):
            return True
        time.sleep(0.05)
    return False


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def serve(app: web.Application, host: str, port: int, name: str) -> None:
    """Run an aiohttp app until SIGINT/SIGTERM; a busy port exits 2 with one line."""
    try:
        # A short shutdown: the stack stops its processes with SIGTERM and waits for them.
        web.run_app(app, host=host, port=port, print=None, shutdown_timeout=1.0)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE or "address already in use" in str(exc):
            print(f"{name}: {PortBusy(name, host, port)}", file=sys.stderr)
            raise SystemExit(EXIT_PORT_BUSY) from None
        raise
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
