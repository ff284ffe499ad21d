"""A network between the local stack's processes: delaying TCP proxies, and a delayed media path.

Everything in the local stack talks over loopback, where a round trip costs microseconds. A
network profile (devstack/network.py) puts a delay on each hop a real deployment has; this
module applies it:

- **TCP hops** (the browser to the page's origin and the API, the function to AWS and to
  OpenAI, the browser's SDP POST to OpenAI) go through `Proxy`, an asyncio TCP proxy. Each
  direction of a connection is a queue: a chunk read at `t` is written at
  `max(previous release, t + one-way delay ± jitter)`, so bytes keep their order and a late
  chunk holds up those behind it (TCP's head-of-line blocking). A chunk "lost" (with the
  link's loss rate) is held a retransmission timeout longer, which is what a lost segment
  costs a TCP stream. A new connection's first request waits the link's handshake round
  trips first (TCP's SYN and TLS 1.3's hello: there is no TLS on loopback, so it is added).
- **The media path** (ICE, DTLS, SCTP and RTP, UDP between the browser and the emulator's
  aiortc peer) is delayed inside the emulator: `delay_media` wraps aioice's datagram socket
  so that each datagram waits half the round trip on the way in and half on the way out, and
  a lost one is really dropped (the protocols' own retransmissions then pay for it).

Why not the kernel's netem: it needs CAP_NET_ADMIN and a network namespace per hop, and on
`lo` it would delay every loopback packet alike (moto and the browser both), not one hop
each. A proxy needs no privileges and gives each hop its own figures.

One hop has two kinds of caller: OpenAI serves the function (a server, no Origin header)
and the browser (its SDP POST in the client-secret flow is a CORS fetch, which always sends
Origin). `Proxy` tells them apart by the first request's headers on each connection, so the
browser's POST pays the browser's link and the function's requests the function's.

    python -m devstack.delay --spec '{"profile": "mobile", "routes": [...]}'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from devstack.network import Link, Profile, profile_named

CHUNK = 65536
HEADERS_END = b"\r\n\r\n"
PEEK_LIMIT = 16384  # a request line and headers; past this the caller counts as a server
_EOF = b""


@dataclass(frozen=True)
class Route:
    """One delayed hop: connections to `listen` are carried to `target` over `link`;
    with `browser_link`, connections whose first request carries Origin use that one."""

    name: str
    listen: tuple[str, int]
    target: tuple[str, int]
    link: Link
    browser_link: Link | None = None


class Delays:
    """Release times of one direction of one connection: in order, each after its delay."""

    def __init__(self, link: Link, rng: random.Random, clock: Callable[[], float]) -> None:
        self.link, self.rng, self.clock = link, rng, clock
        self.last = 0.0

    def release(self, extra_s: float = 0.0) -> float:
        due = self.clock() + extra_s + self.link.sample_one_way_s(self.rng)
        if self.link.loss and self.rng.random() < self.link.loss:
            due += self.link.rto_s
        self.last = max(self.last, due)
        return self.last


async def _forward(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delays: Delays,
    first: bytes = b"",
    first_extra_s: float = 0.0,
) -> None:
    """Copies `reader` to `writer`, each chunk released at its time; EOF is delayed too."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if data is _EOF:
                with contextlib.suppress(OSError, RuntimeError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    extra_s = first_extra_s  # the connection's handshake, paid by its first bytes
    try:
        if first:
            queue.put_nowait((delays.release(extra_s), first))
            extra_s = 0.0
        while data := await reader.read(CHUNK):
            queue.put_nowait((delays.release(extra_s), data))
            extra_s = 0.0
        queue.put_nowait((delays.release(), _EOF))
        await sender
    except (ConnectionError, OSError):
        writer.close()  # a reset on one side is a close on the other: the peer stops too
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await sender


async def _peek_request(reader: asyncio.StreamReader) -> bytes:
    """The client's first bytes, up to the end of its first request's headers."""
    data = b""
    while HEADERS_END not in data and len(data) < PEEK_LIMIT:
        chunk = await reader.read(CHUNK)
        if not chunk:
            break
        data += chunk
    return data


def sent_by_browser(head: bytes) -> bool:
    """A browser's cross-origin fetch (and any POST from a page) carries Origin; a server's
    HTTP client does not."""
    headers = head.split(HEADERS_END, 1)[0].lower()
    return b"\r\norigin:" in headers


class Proxy:
    """Every route of a profile in one event loop."""

    def __init__(self, routes: Sequence[Route], seed: int | None = None) -> None:
        self.routes = list(routes)
        self.rng = random.Random(seed)  # noqa: S311  emulated network noise, not security
        self.servers: list[asyncio.Server] = []
        self.connections = 0

    async def start(self) -> None:
        for route in self.routes:
            host, port = route.listen
            server = await asyncio.start_server(
                functools.partial(self._handle, route), host, port, reuse_address=True
            )
            self.servers.append(server)

    def ports(self) -> list[int]:
        return [int(s.sockets[0].getsockname()[1]) for s in self.servers]

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()

    async def _handle(
        self, route: Route, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        link = route.link
        first = b""
        try:
            if route.browser_link is not None:
                first = await _peek_request(client_r)
                if sent_by_browser(first):
                    link = route.browser_link
            upstream_r, upstream_w = await asyncio.open_connection(*route.target)
        except OSError:
            client_w.close()
            return
        # The handshake round trips count from the connection's start, as the SYN does.
        handshake_s = max(0.0, accepted + link.handshake_s - loop.time())
        up = Delays(link, self.rng, loop.time)
        down = Delays(link, self.rng, loop.time)
        try:
            await asyncio.gather(
                _forward(client_r, upstream_w, up, first, handshake_s),
                _forward(upstream_r, client_w, down),
            )
        finally:
            for writer in (upstream_w, client_w):
                writer.close()


def delay_media(link: Link, seed: int | None = None) -> None:
    """Puts `link` on every ICE socket of this process (aiortc's, through aioice): half the
    round trip on each datagram in, half on each out, jitter on both, and loss as real drops.
    Called once, in the emulator, before any peer connection exists."""
    from aioice import ice

    rng = random.Random(seed)  # noqa: S311  emulated network noise, not security

    def later(action: Callable[[], Any]) -> None:
        if link.loss and rng.random() < link.loss:  # each datagram, each way
            return
        asyncio.get_running_loop().call_later(link.sample_one_way_s(rng), action)

    received = ice.StunProtocol.datagram_received
    send_stun = ice.StunProtocol.send_stun

    def datagram_received(self: Any, data: bytes | str, addr: tuple[Any, ...]) -> None:
        later(lambda: received(self, data, addr))

    def stun_out(self: Any, message: Any, addr: tuple[str, int]) -> None:
        later(lambda: _quietly(lambda: send_stun(self, message, addr)))

    async def data_out(self: Any, data: bytes, addr: tuple[str, int]) -> None:
        later(lambda: _quietly(lambda: self.transport.sendto(data, addr)))

    ice.StunProtocol.datagram_received = datagram_received  # type: ignore[method-assign]
    ice.StunProtocol.send_stun = stun_out  # type: ignore[method-assign]
    ice.StunProtocol.send_data = data_out  # type: ignore[method-assign]


def _quietly(action: Callable[[], None]) -> None:
    with contextlib.suppress(OSError, AttributeError):  # the socket closed meanwhile
        action()


def routes_from_spec(spec: dict[str, Any]) -> tuple[Profile, list[Route]]:
    profile = profile_named(str(spec["profile"]))
    routes = []
    for r in spec["routes"]:
        browser = r.get("browser_hop")
        routes.append(
            Route(
                name=r["name"],
                listen=(r["listen"][0], int(r["listen"][1])),
                target=(r["target"][0], int(r["target"][1])),
                link=profile.link(r["hop"]),
                browser_link=profile.link(browser) if browser else None,
            )
        )
    return profile, routes


async def _run(routes: Sequence[Route]) -> None:
    proxy = Proxy(routes)
    await proxy.start()
    for route in routes:
        print(f"{route.name}: {route.listen[0]}:{route.listen[1]} -> "
              f"{route.target[0]}:{route.target[1]} ({route.link})", flush=True)  # fmt: skip
    try:
        await asyncio.Event().wait()
    finally:
        await proxy.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.delay", description=__doc__)
    parser.add_argument("--spec", required=True, help="JSON: the profile's name and the routes")
    args = parser.parse_args(argv)
    profile, routes = routes_from_spec(json.loads(args.spec))
    print(f"network profile {profile.name}: {profile.summary}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(routes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
