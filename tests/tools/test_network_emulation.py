"""The local stack's network (devstack/network.py, devstack/delay.py): the profiles parse, and
the proxy really delays by its link, with jitter and loss inside their bounds, bytes in order.
Loopback only: a small echo server behind a `Proxy` in this test's own event loop."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from devstack.delay import Proxy, Route, routes_from_spec, sent_by_browser
from devstack.net import free_port
from devstack.network import HOPS, PROFILES, Link, parse_network, profile_named

HOST = "127.0.0.1"
SLACK_S = 0.06  # what a quiet machine may add to a timer; load adds, never subtracts


# A delay the proxy applies is a floor every exchange pays, and a load on the machine (the
# batteries on the other test worker) only adds to it, by a stall of a few hundred ms at
# times. So every exchange is held to the floor, but the ceiling to a typical one: the fastest
# of a few tries of a single exchange, or a high quantile of many.
TRIES = 3


def typical(times: list[float], quantile: float = 0.8) -> float:
    """The time below which `quantile` of the exchanges fell: a stall or two above it."""
    ordered = sorted(times)
    return ordered[min(int(len(ordered) * quantile), len(ordered) - 1)]


# --- profiles -------------------------------------------------------------------------------


def test_the_three_named_profiles_parse_and_loopback_is_none() -> None:
    assert set(PROFILES) == {"same-region", "other-continent", "mobile"}
    assert parse_network("Mobile") is PROFILES["mobile"]
    for nothing in (None, "", "loopback", " LOOPBACK "):
        assert parse_network(nothing) is None
    with pytest.raises(ValueError, match="loopback, same-region, other-continent, mobile"):
        parse_network("satellite")


def test_make_dev_takes_a_profile_by_flag_or_environment_and_refuses_an_unknown_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from devstack.__main__ import parse_args

    assert parse_args(["--network", "mobile"]).network is PROFILES["mobile"]
    monkeypatch.setenv("DEVSTACK_NETWORK", "other-continent")
    assert parse_args([]).network is PROFILES["other-continent"]
    monkeypatch.setenv("DEVSTACK_NETWORK", "")
    assert parse_args([]).network is None
    with pytest.raises(SystemExit):
        parse_args(["--network", "satellite"])
    assert "unknown network profile 'satellite'" in capsys.readouterr().err


def test_every_profile_names_every_hop_and_the_far_ones_are_farther() -> None:
    for profile in PROFILES.values():
        for hop in HOPS:
            assert profile.link(hop).rtt_ms > 0
        assert profile.function_aws.rtt_ms < profile.function_openai.rtt_ms
    near, far = profile_named("same-region"), profile_named("other-continent")
    assert far.browser_api.rtt_ms > near.browser_api.rtt_ms
    mobile = profile_named("mobile")
    assert mobile.browser_api.loss > 0 and mobile.browser_api.jitter_ms > 0
    with pytest.raises(ValueError, match="unknown hop"):
        near.link("browser_moon")


def test_a_link_refuses_what_no_network_has() -> None:
    for bad in ({"rtt_ms": -1}, {"rtt_ms": 10, "jitter_ms": -1}, {"rtt_ms": 10, "loss": 1.0}):
        with pytest.raises(ValueError):
            Link(**bad)


def test_one_way_delays_stay_within_the_jitter_and_spread_across_it() -> None:
    link, rng = Link(40, 10), random.Random(7)
    samples = [link.sample_one_way_s(rng) * 1000 for _ in range(2000)]
    assert min(samples) >= 10 and max(samples) <= 30
    assert statistics.median(samples) == pytest.approx(20, abs=1)
    assert max(samples) - min(samples) > 15  # the jitter is really applied
    assert Link(4, 10).sample_one_way_s(rng) >= 0  # never below zero


def test_a_lost_segment_costs_a_retransmission_timeout_of_at_least_200_ms() -> None:
    assert Link(20).rto_s == 0.2
    assert Link(300, 10).rto_s == pytest.approx(0.34)


def test_the_spec_gives_each_route_its_hop_and_the_browser_its_own_link() -> None:
    profile, routes = routes_from_spec(
        {
            "profile": "mobile",
            "routes": [
                {"name": "aws", "listen": [HOST, 1], "target": [HOST, 2], "hop": "function_aws"},
                {"name": "openai", "listen": [HOST, 3], "target": [HOST, 4],
                 "hop": "function_openai", "browser_hop": "browser_openai"},
            ],
        }
    )  # fmt: skip
    assert routes[0].link == profile.function_aws and routes[0].browser_link is None
    assert routes[1].link == profile.function_openai
    assert routes[1].browser_link == profile.browser_openai


def test_a_browser_request_is_told_from_a_servers_by_its_origin_header() -> None:
    browser = (
        b"POST /v1/realtime/calls HTTP/1.1\r\nHost: x\r\nOrigin: http://localhost:5173\r\n\r\n"
    )
    server = b"POST /v1/realtime/calls HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\r\n"
    assert sent_by_browser(browser)
    assert not sent_by_browser(server)
    assert not sent_by_browser(b"GET / HTTP/1.1\r\n\r\norigin: in the body\r\n")


# --- the proxy (real loopback sockets: marked `stack`) --------------------------------------


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@asynccontextmanager
async def proxied(link: Link, browser: Link | None = None) -> AsyncIterator[int]:
    """An echo server behind a proxy on `link`; yields the proxy's port."""
    echo = await asyncio.start_server(_echo, HOST, 0)
    target = int(echo.sockets[0].getsockname()[1])
    port = free_port()
    proxy = Proxy([Route("echo", (HOST, port), (HOST, target), link, browser)], seed=3)
    await proxy.start()
    try:
        yield port
    finally:
        await proxy.close()
        echo.close()
        await echo.wait_closed()


async def round_trips(port: int, count: int, first: bytes = b"ping") -> tuple[float, list[float]]:
    """The first exchange's time (it pays the handshake) and each later one's, in seconds."""
    reader, writer = await asyncio.open_connection(HOST, port)
    times = []
    for n in range(count + 1):
        message = first if n == 0 else b"ping"
        started = time.monotonic()
        writer.write(message)
        await reader.readexactly(len(message))
        times.append(time.monotonic() - started)
    writer.close()
    return times[0], times[1:]


def run(coroutine: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coroutine())  # type: ignore[arg-type]


@pytest.mark.stack
def test_each_exchange_takes_the_round_trip_and_a_new_connection_its_handshakes_first() -> None:
    async def check() -> None:
        async with proxied(Link(80, handshake_rtts=2)) as port:
            tries = [await round_trips(port, 5) for _ in range(TRIES)]
        firsts = [first for first, _ in tries]
        later = [each for _, times in tries for each in times]
        # Two handshake round trips, then the exchange.
        assert min(firsts) >= 0.24 and min(firsts) <= 0.24 + SLACK_S, firsts
        assert min(later) >= 0.08 and typical(later) <= 0.08 + SLACK_S, later

    run(check)


@pytest.mark.stack
def test_jitter_varies_each_exchange_within_its_bounds() -> None:
    async def check() -> None:
        async with proxied(Link(60, 10, handshake_rtts=0)) as port:
            _, later = await round_trips(port, 30)
        assert min(later) >= 0.04  # two one-way delays, each at least 30 - 10 ms
        assert typical(later) <= 0.08 + SLACK_S, later  # and at most 30 + 10 ms
        assert max(later) - min(later) > 0.005  # not one fixed delay

    run(check)


@pytest.mark.stack
def test_loss_holds_some_exchanges_a_retransmission_timeout_and_keeps_every_byte_in_order() -> None:
    async def check() -> None:
        async with proxied(Link(20, loss=0.2, handshake_rtts=0)) as port:
            _, later = await round_trips(port, 40)
            reader, writer = await asyncio.open_connection(HOST, port)
            sent = b"".join(f"{n:05d}".encode() for n in range(2000))
            for n in range(0, len(sent), 500):  # many chunks, some of them "lost"
                writer.write(sent[n : n + 500])
                await writer.drain()
                await asyncio.sleep(0.001)
            echoed = await reader.readexactly(len(sent))
            writer.close()
        assert echoed == sent
        slow = [t for t in later if t >= 0.2]
        assert slow, "no exchange paid a retransmission timeout at 20% loss"
        assert len(slow) < len(later)  # and not all of them did
        # At most a loss each way (a retransmission timeout and the link), for all but a stall.
        assert typical(later, 0.9) <= 2 * (0.2 + 0.02) + SLACK_S, later

    run(check)


@pytest.mark.stack
def test_the_browsers_requests_pay_the_browsers_link_and_a_servers_its_own() -> None:
    async def check() -> None:
        async with proxied(Link(20, handshake_rtts=0), Link(160, handshake_rtts=0)) as port:
            servers, browsers = [], []
            for _ in range(TRIES):
                server, _ = await round_trips(port, 0, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                browser, _ = await round_trips(
                    port, 0, b"GET / HTTP/1.1\r\nHost: a\r\nOrigin: http://localhost\r\n\r\n"
                )
                servers.append(server)
                browsers.append(browser)
        assert min(servers) >= 0.02 and min(servers) <= 0.02 + SLACK_S, servers
        assert min(browsers) >= 0.16 and min(browsers) <= 0.16 + SLACK_S, browsers

    run(check)


# --- the stack under a profile --------------------------------------------------------------


@pytest.mark.stack
def test_the_stack_under_a_profile_keeps_its_urls_and_delays_the_browsers_hop() -> None:
    from devstack.stack import start_stack

    with start_stack(quotas="50/minute,500/day", network="other-continent") as stack:
        assert stack.network is PROFILES["other-continent"]
        # The page's origin is the one the browser is given; the function's AWS is a proxy.
        assert stack.server_ports["web"] != stack.ports["web"]
        assert stack.function_urls["aws"] != stack.urls["aws"]
        token = stack.token("net", "openid realtime:mint")
        with httpx.Client(base_url=stack.urls["web"], timeout=10) as client:
            assert client.get("/config.json").status_code == 200  # opens the connection
            started = time.monotonic()
            answer = client.get("/v1/realtime/calls", headers={"Authorization": f"Bearer {token}"})
            elapsed = time.monotonic() - started
        assert answer.status_code == 200, answer.text
        # One browser round trip (90 ms) and the function's DynamoDB reads (2 ms each) at least.
        assert elapsed >= 0.09 + 0.002
