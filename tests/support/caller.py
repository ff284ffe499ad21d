"""A WebRTC caller like the browser page (aiortc), every event it hears checked by the oracle;
and `run`, which drives a test's coroutine to its end within a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from devstack.openai_rtc import ToneTrack, rtc_configuration
from tests.support.oracle import conform_event

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


class Caller:
    """A WebRTC client like the browser page: microphone (or not), `oai-events`, a speaker."""

    def __init__(self, *, microphone: bool = True) -> None:
        self.pc = RTCPeerConnection(rtc_configuration())
        if microphone:
            self.pc.addTrack(ToneTrack(frequency=300))
        else:
            self.pc.addTransceiver("audio", direction="recvonly")
        self.channel = self.pc.createDataChannel("oai-events")
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.channel.on("message", lambda message: self.events.put_nowait(json.loads(message)))
        self.channel_closed = asyncio.Event()
        self.channel.on("close", self.channel_closed.set)
        self.frames = 0
        self._readers: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._readers.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames += 1

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    async def next_event(self, timeout: float = 10) -> dict[str, Any]:
        event = await asyncio.wait_for(self.events.get(), timeout)
        conform_event(event)
        return event

    async def until(self, kind: str) -> list[dict[str, Any]]:
        seen = [await self.next_event()]
        while seen[-1]["type"] != kind:
            seen.append(await self.next_event())
        return seen

    async def wait_frames(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.frames < count:
            assert time.monotonic() < deadline, f"only {self.frames} audio frames arrived"
            await asyncio.sleep(0.05)

    async def rtp_packets_received(self) -> int:
        stats = await self.pc.getStats()
        return sum(
            getattr(s, "packetsReceived", 0) for s in stats.values() if s.type == "inbound-rtp"
        )

    async def wait_state(self, wanted: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != wanted:
            assert time.monotonic() < deadline, f"still {self.pc.connectionState}"
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.pc.close()
        for reader in self._readers:
            reader.cancel()
