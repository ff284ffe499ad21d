"""The audio of a Live session as the emulator handles it: the caller's track read as mono
PCM16 at 24 kHz (the format of the sideband's audio copies), how loud each frame is (what the
emulator takes for speech), and the tone the model "speaks" to a caller without a microphone.

OpenAI copies both directions of a WebRTC session to every sideband as base64 JSON events,
about 128 KB a second in all; the emulator sends the same format at the same pace, in 100 ms
events, so that what a sideband costs to read is measured on the real volume."""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import math
import time
from collections.abc import Callable

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

RATE = 24_000
CHUNK_MS = 100
CHUNK_BYTES = RATE * 2 * CHUNK_MS // 1000
TONE_HZ = 440  # what the caller hears from the emulator's ToneTrack
TONE_AMPLITUDE = 0.2
# Loudness (RMS, a fraction of full scale) taken for speech at `vad_threshold` 0.5; a quiet room
# through a microphone stays well below it, a voice well above.
SPEECH_RMS_AT_HALF = 0.02


def speech_rms(vad_threshold: float) -> float:
    return SPEECH_RMS_AT_HALF * vad_threshold * 2


def level(pcm: bytes) -> float:
    """The RMS of PCM16 samples as a fraction of full scale (every 4th sample is enough)."""
    samples = array.array("h", pcm[: len(pcm) - len(pcm) % 2])[::4]
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples)) / 32768


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode("ascii")


class Chunker:
    """Collects PCM into the sideband's fixed-size events."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def add(self, pcm: bytes) -> list[bytes]:
        self._buffer += pcm
        chunks = []
        while len(self._buffer) >= CHUNK_BYTES:
            chunks.append(bytes(self._buffer[:CHUNK_BYTES]))
            del self._buffer[:CHUNK_BYTES]
        return chunks

    def clear(self) -> None:
        self._buffer.clear()


async def listen(track: MediaStreamTrack, on_pcm: Callable[[bytes], None]) -> None:
    """Every frame of the caller's track as mono PCM16 at 24 kHz, until the track ends."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            if not isinstance(frame, av.AudioFrame):
                continue
            for out in resampler.resample(frame):
                # A plane may be padded past its samples.
                on_pcm(bytes(out.planes[0])[: out.samples * 2])


class Tone:
    """The model's voice when the caller has no microphone, in the sideband's chunks."""

    def __init__(self, frequency: int = TONE_HZ, amplitude: float = TONE_AMPLITUDE) -> None:
        peak = int(32767 * amplitude)
        second = array.array(
            "h", (int(peak * math.sin(2 * math.pi * frequency * i / RATE)) for i in range(RATE))
        ).tobytes()
        self._wave = second + second[:CHUNK_BYTES]
        self._offset = 0

    def chunk(self) -> bytes:
        chunk = self._wave[self._offset : self._offset + CHUNK_BYTES]
        self._offset = (self._offset + CHUNK_BYTES) % (RATE * 2)
        return chunk


async def every_chunk(on_chunk: Callable[[], None]) -> None:
    """Calls `on_chunk` once per chunk's length of real time, without drift."""
    started = time.monotonic()
    count = 0
    while True:
        count += 1
        await asyncio.sleep(max(0.0, started + count * CHUNK_MS / 1000 - time.monotonic()))
        on_chunk()
