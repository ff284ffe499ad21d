"""The WebRTC side of the Realtime emulator: a real aiortc peer per call, audio back to the
caller, and the `oai-events` data channel speaking OpenAI's server events."""

from __future__ import annotations

import array
import asyncio
import contextlib
import fractions
import json
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import av
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from devstack.openai_schema import ApiError, apply_session, check_session, new_id
from devstack.openai_usage import (
    DEFAULT_TRANSCRIPT,
    RateLimits,
    response_usage,
    transcription_usage,
)
from devstack.wire import NotJson, json_value

log = logging.getLogger("openai_emulator.rtc")

EVENTS_CHANNEL = "oai-events"
SESSION_LIMIT_S = 60 * 60  # no request field shortens it; only hangup ends a call early
# How long a closing call waits for its last event to leave: closing aborts the SCTP
# association, and an abort drops whatever is still queued.
FLUSH_S = 0.5
DELTA_PAUSE_S = 0.01  # enough to arrive as separate messages, like a streamed reply
MIN_COMMIT_S = 0.1  # OpenAI refuses to commit less than 100 ms of audio
CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
)


class ToneTrack(MediaStreamTrack):
    """A sine tone in real-time 20 ms frames at 48 kHz, what a microphone track would give."""

    kind = "audio"

    def __init__(self, frequency: int = 440, rate: int = 48_000, amplitude: float = 0.2) -> None:
        super().__init__()
        self.rate = rate
        self.samples = rate // 50
        # One second of tone, so any integer frequency wraps around without a click.
        peak = int(32767 * amplitude)
        second = array.array(
            "h", (int(peak * math.sin(2 * math.pi * frequency * i / rate)) for i in range(rate))
        ).tobytes()
        self._wave = second + second[: self.samples * 2]
        self._start: float | None = None
        self._timestamp = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._pace()
        offset = (self._timestamp % self.rate) * 2
        chunk = self._wave[offset : offset + self.samples * 2]
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.samples)
        frame.planes[0].update(chunk)
        frame.pts = self._timestamp
        frame.sample_rate = self.rate
        frame.time_base = fractions.Fraction(1, self.rate)
        return frame

    async def _pace(self) -> None:
        if self._start is None:
            self._start = time.monotonic()
            return
        self._timestamp += self.samples
        await asyncio.sleep(self._start + self._timestamp / self.rate - time.monotonic())


# What never reaches a sideband (docs/openai-contract.md §7.1): the handshake events of the
# peer's own channel; the audio itself stays on the media track.
CHANNEL_ONLY_EVENTS = frozenset({"session.created", "conversation.created"})


class Listener(Protocol):
    """A sideband attached to a call (devstack.openai_sideband): it gets every server event
    except the channel's own handshake, and is ended with the call."""

    def deliver(self, event: dict[str, Any]) -> None: ...

    def end(self, code: int, reason: str) -> None: ...


def rtc_configuration() -> RTCConfiguration:
    # aiortc would otherwise ask Google's STUN server, which stalls gathering offline.
    return RTCConfiguration(iceServers=[])


async def answer_offer(
    pc: RTCPeerConnection, offer_sdp: str, add_tracks: Callable[[], None], param: str = "sdp"
) -> str:
    """The answer to a caller's offer, with every ICE candidate in it (no trickle over OpenAI's
    APIs); `add_tracks` adds the local media once the offer's is known. Shared by the Realtime
    calls and the Live sessions (devstack/openai_live.py)."""
    if not any(line.startswith("m=") for line in offer_sdp.splitlines()):
        raise ApiError(
            400, "Invalid SDP offer: no media sections.", code="invalid_offer", param=param
        )
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
    except (ValueError, KeyError, IndexError) as error:
        raise ApiError(
            400, f"Invalid SDP offer: {error}", code="invalid_offer", param=param
        ) from error
    add_tracks()
    await pc.setLocalDescription(await pc.createAnswer())
    return str(pc.localDescription.sdp)


async def drain(channel: RTCDataChannel | None) -> None:
    """Waits (a bounded time) for a data channel's last events to leave before its peer
    closes: closing aborts the SCTP association, and an abort drops whatever is queued."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FLUSH_S
    while channel is not None and channel.bufferedAmount and loop.time() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(max(0.0, min(0.1, deadline - loop.time())))  # in flight, unacked


class Call:
    """One WebRTC call: the peer connection and the conversation on its data channel."""

    def __init__(
        self,
        session: dict[str, Any],
        *,
        on_closed: Callable[[Call], None] = lambda call: None,
        limit_s: float = SESSION_LIMIT_S,
    ) -> None:
        self.id = "rtc_" + secrets.token_hex(16)
        self.pc = RTCPeerConnection(rtc_configuration())
        self.session = session
        self.conversation_id = new_id("conv")
        self.items: list[dict[str, Any]] = []
        self.channel: RTCDataChannel | None = None
        self.audio_source = "none"
        self.events_sent = 0
        self.closed = False
        self.ended_by: str | None = None  # hangup, session_limit, peer or shutdown
        self.started = time.monotonic()
        self.limit_s = limit_s
        self._on_closed = on_closed
        self._relay = MediaRelay()
        self._remote_audio: MediaStreamTrack | None = None
        self._local_tracks: list[MediaStreamTrack] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._responding = False
        self._last_response_id: str | None = None
        self._last_input = (0, 0)  # text and audio tokens the next response finds cached
        self._heard_seconds: dict[str, float] = {}  # a spoken turn's length, by item id
        self.listeners: list[Listener] = []
        self.sidebands_total = 0
        self.sidebands_peak = 0  # the most attached at once: the watcher's lease, seen from here
        # Every usage reported (responses' and transcriptions'), with the model that prices
        # it: the oracle of exact accounting.
        self.usages: list[dict[str, Any]] = []
        # What a test scripted (/__emulator/calls/{id}/script): the next usages to report.
        self.scripted_responses: deque[dict[str, Any]] = deque()
        self.scripted_transcriptions: deque[dict[str, Any]] = deque()
        self.input_seconds = 0.0  # the caller's audio since the last commit or clear
        self._rate_limits = RateLimits()
        self._expiry: asyncio.Future[None] | None = None
        self._limit = asyncio.get_running_loop().call_later(limit_s, self._expire)
        self.pc.on("datachannel", self._attach)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    # --- negotiation -------------------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """The SDP answer, with every ICE candidate in it (no trickle over this API)."""
        return await answer_offer(self.pc, offer_sdp, self._add_audio)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._remote_audio is None:
            self._remote_audio = track

    def _add_audio(self) -> None:
        if not any(t.kind == "audio" for t in self.pc.getTransceivers()):
            return  # an offer without audio gets an answer without audio
        if self._remote_audio is not None:
            # The caller hears itself: proof that its microphone reached the "model".
            track = self._relay.subscribe(self._remote_audio, buffered=False)
            self.audio_source = "echo"
            self._spawn(self._buffer_input(self._relay.subscribe(self._remote_audio)))
        else:
            track = ToneTrack()
            self.audio_source = "tone"
        self._local_tracks.append(track)
        self.pc.addTrack(track)

    async def _buffer_input(self, track: MediaStreamTrack) -> None:
        """The input audio buffer, measured: how much of the caller's voice arrived since the
        last commit. (No voice activity detection: a turn is committed by the caller.)"""
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, av.AudioFrame):
                    self.input_seconds += frame.samples / (frame.sample_rate or 48_000)

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            await self.close("peer")

    def _expire(self) -> None:
        # Not one of self._tasks: close() cancels those, and must not cancel itself.
        self._expiry = asyncio.ensure_future(self._end_session())

    async def _end_session(self) -> None:
        """What OpenAI does at the cap: an `error` event saying why, then the call ends."""
        minutes = self.limit_s / 60
        span = f"{minutes:g} minutes" if minutes >= 1 else f"{self.limit_s:g} seconds"
        message = f"Your session hit the maximum duration of {span}."
        self.send_error(ApiError(400, message, code="session_expired"))
        for listener in list(self.listeners):
            listener.end(1001, message)
        await self._flush()
        await self.close("session_limit")

    async def _flush(self) -> None:
        await drain(self.channel)

    async def close(self, reason: str = "shutdown") -> None:
        """Ends the call for good: the SCTP association is aborted and DTLS shut down, so the
        caller's data channel closes and its connection leaves `connected` at once."""
        if self.closed:
            return
        self.closed = True
        self.ended_by = reason
        self._limit.cancel()
        for task in list(self._tasks):
            task.cancel()
        for track in self._local_tracks:
            track.stop()
        for listener in list(self.listeners):
            listener.end(1000, "The call ended.")
        await self.pc.close()
        self._on_closed(self)

    def attach(self, listener: Listener) -> None:
        self.listeners.append(listener)
        self.sidebands_total += 1
        self.sidebands_peak = max(self.sidebands_peak, len(self.listeners))

    def detach(self, listener: Listener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the data channel --------------------------------------------------------------------

    def _attach(self, channel: RTCDataChannel) -> None:
        if channel.label != EVENTS_CHANNEL or self.channel is not None:
            return
        self.channel = channel
        channel.on("message", self._on_message)
        self.send({"type": "session.created", "session": self.session})
        self.send(
            {
                "type": "conversation.created",
                "conversation": {"id": self.conversation_id, "object": "realtime.conversation"},
            }
        )

    def send(self, event: dict[str, Any], to: Listener | None = None) -> None:
        """To the caller's channel and every sideband; with `to`, to that sideband only."""
        full = {"event_id": new_id("event")} | event
        if to is not None:
            to.deliver(full)
            return
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(full))
            self.events_sent += 1
        if event["type"] not in CHANNEL_ONLY_EVENTS:
            for listener in list(self.listeners):
                listener.deliver(full)

    def send_error(self, error: ApiError) -> None:
        """An error about the call itself (the session cap): everyone hears it."""
        self.send({"type": "error", "error": error.error() | {"event_id": None}})

    def _send_channel_only(self, event: dict[str, Any]) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps({"event_id": new_id("event")} | event))
            self.events_sent += 1

    def _on_message(self, message: str | bytes) -> None:
        self.receive(message, None)

    def receive(self, message: str | bytes, origin: Listener | None) -> None:
        """A client event from the caller's channel (origin None) or from a sideband: errors
        go back to whoever sent the event; what it changes is told to everyone."""
        event = _parse_event(message)
        if event is None:
            error = ApiError(400, "The event is not a JSON object.", code="invalid_json")
            self._reply_error(error, None, origin)
            return
        client_event_id = event.get("event_id")
        try:
            self._dispatch(event)
        except ApiError as error:
            event_id = client_event_id if isinstance(client_event_id, str) else None
            self._reply_error(error, event_id, origin)

    def _reply_error(self, error: ApiError, event_id: str | None, origin: Listener | None) -> None:
        payload = {"type": "error", "error": error.error() | {"event_id": event_id}}
        if origin is None:
            self._send_channel_only(payload)
        else:
            self.send(payload, origin)

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "session.update": self._session_update,
            "conversation.item.create": self._item_create,
            "conversation.item.delete": self._item_delete,
            "response.create": self._response_create,
            "input_audio_buffer.commit": self._input_commit,
            "input_audio_buffer.clear": self._input_clear,
            "output_audio_buffer.clear": self._output_clear,
        }
        if not isinstance(kind, str):
            raise ApiError(
                400,
                "Missing required parameter: 'type'.",
                param="type",
                code="missing_required_parameter",
            )
        if kind not in CLIENT_EVENTS:
            supported = ", ".join(f"'{name}'" for name in CLIENT_EVENTS)
            raise ApiError(
                400,
                f"Invalid value: '{kind}'. Supported values are: {supported}.",
                code="invalid_value",
                param="type",
            )
        if kind not in handlers:
            raise ApiError(
                400,
                f"The local Realtime emulator does not implement '{kind}'.",
                code="unsupported_event",
                param="type",
            )
        handlers[kind](event)

    def _session_update(self, event: dict[str, Any]) -> None:
        if "session" not in event:
            raise ApiError(
                400,
                "Missing required parameter: 'session'.",
                code="missing_required_parameter",
                param="session",
            )
        request = check_session(event["session"], "session")
        if request["type"] != self.session["type"]:
            raise ApiError(
                400,
                "A session's type cannot change after it is created.",
                code="invalid_value",
                param="session.type",
            )
        if "model" in request and request["model"] != self.session.get("model"):
            # Refused whole, nothing of the update applied. OpenAI's wording is unverified; this
            # one names both models, since a client SDK that pins its own default model (the
            # Agents SDK does) meets it on a call created for another (docs/clients.md).
            raise ApiError(
                400,
                f"This session's model is '{self.session.get('model')}', fixed when the call was "
                f"created; this session.update names '{request['model']}', so none of it was "
                "applied. Leave 'model' out of session.update, or name the session's own.",
                code="invalid_value",
                param="session.model",
            )
        self.session = apply_session(self.session, request)
        self.send({"type": "session.updated", "session": self.session})

    def _item_create(self, event: dict[str, Any]) -> None:
        item = _check_item(event.get("item"))
        previous = event.get("previous_item_id") or (self.items[-1]["id"] if self.items else None)
        stored = {"id": new_id("item"), "object": "realtime.item", "status": "completed"} | item
        self.items.append(stored)
        for kind in ("conversation.item.added", "conversation.item.done"):
            self.send({"type": kind, "previous_item_id": previous, "item": stored})

    def _item_delete(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id")
        if not any(item["id"] == item_id for item in self.items):
            raise ApiError(
                400,
                f"Item with item_id not found: {item_id}",
                code="item_not_found",
                param="item_id",
            )
        self.items = [item for item in self.items if item["id"] != item_id]
        self.send({"type": "conversation.item.deleted", "item_id": item_id})

    def _input_clear(self, event: dict[str, Any]) -> None:
        self.input_seconds = 0.0
        self.send({"type": "input_audio_buffer.cleared"})

    def _input_commit(self, event: dict[str, Any]) -> None:
        """The caller's turn: its audio becomes a user message, transcribed when the session
        asks for input transcription (on the transcription model's bill)."""
        seconds = self.input_seconds
        if seconds < MIN_COMMIT_S:
            raise ApiError(
                400,
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"100ms of audio, but buffer only has {seconds * 1000:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        self.input_seconds = 0.0
        previous = self.items[-1]["id"] if self.items else None
        item_id = new_id("item")
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self.items.append(item)
        self._heard_seconds[item_id] = seconds
        self.send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            }
        )
        for kind in ("conversation.item.added", "conversation.item.done"):
            self.send({"type": kind, "previous_item_id": previous, "item": item})
        config = (self.session.get("audio", {}).get("input") or {}).get("transcription")
        if isinstance(config, dict):
            self._transcribe(item, seconds, config)

    def _transcribe(self, item: dict[str, Any], seconds: float, config: dict[str, Any]) -> None:
        # At once, not after a model's delay: a response asked for next hears the transcript.
        model = str(config.get("model") or "whisper-1")
        if self.scripted_transcriptions:
            scripted = self.scripted_transcriptions.popleft()
            transcript = scripted.get("transcript", DEFAULT_TRANSCRIPT)
            usage = scripted["usage"]
        else:
            transcript = DEFAULT_TRANSCRIPT
            usage = transcription_usage(model, seconds, transcript, config.get("prompt") or "")
        # A new item, not the old one changed: events still queued for a sideband hold it.
        heard = item | {"content": [{"type": "input_audio", "transcript": transcript}]}
        self.items = [heard if known is item else known for known in self.items]
        where = {"item_id": item["id"], "content_index": 0}
        self.send(
            {
                "type": "conversation.item.input_audio_transcription.delta",
                **where,
                "delta": transcript,
            }
        )
        self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                **where,
                "transcript": transcript,
                "usage": usage,
            }
        )
        self.usages.append({"kind": "transcription", **where, "model": model, "usage": usage})

    def _output_clear(self, event: dict[str, Any]) -> None:
        if self._last_response_id is not None:
            self.send(
                {"type": "output_audio_buffer.cleared", "response_id": self._last_response_id}
            )

    def _response_create(self, event: dict[str, Any]) -> None:
        if self.session["type"] != "realtime":
            raise ApiError(
                400, "Responses are not available in a transcription session.", param="type"
            )
        if self._responding:
            raise ApiError(
                400,
                "Conversation already has an active response in progress.",
                code="conversation_already_has_active_response",
            )
        options = event.get("response") or {}
        if not isinstance(options, dict):
            raise ApiError(
                400, "'response' must be an object.", code="invalid_type", param="response"
            )
        modalities = options.get("output_modalities") or self.session["output_modalities"]
        if modalities not in (["audio"], ["text"]):
            raise ApiError(
                400,
                f"Invalid value: {modalities!r}.",
                code="invalid_value",
                param="response.output_modalities",
            )
        instructions = options.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise ApiError(
                400,
                "'response.instructions' must be a string.",
                code="invalid_type",
                param="response.instructions",
            )
        self._responding = True
        self._spawn(self._respond(modalities, instructions))

    # --- the scripted reply ------------------------------------------------------------------

    def reply_text(self, instructions: str | None = None) -> str:
        if instructions:
            # Per-response instructions (a server's goodbye) are obeyed to the letter.
            return f"As instructed: {instructions}"
        said = _last_user_text(self.items)
        base = "Hello from the local Realtime emulator."
        return f"{base} You said: {said}" if said else base

    async def _respond(self, modalities: list[str], instructions: str | None = None) -> None:
        try:
            await self._stream_reply(modalities, instructions)
        finally:
            self._responding = False

    async def _stream_reply(self, modalities: list[str], instructions: str | None) -> None:
        text_only = modalities == ["text"]
        response_id, item_id = new_id("resp"), new_id("item")
        self._last_response_id = response_id
        previous = self.items[-1]["id"] if self.items else None
        response = self._response(response_id, modalities)
        self.send({"type": "response.created", "response": response})
        reserved = self.session.get("max_output_tokens")
        self.send(self._rate_limits.event(reserved if isinstance(reserved, int) else 4096))
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        self.send(
            {
                "type": "response.output_item.added",
                "response_id": response_id,
                "output_index": 0,
                "item": item,
            }
        )
        self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        empty = {"type": "text", "text": ""} if text_only else {"type": "audio", "transcript": ""}
        self.send(
            {"type": "response.content_part.added", **where, "content_index": 0, "part": empty}
        )
        if not text_only:
            self.send({"type": "output_audio_buffer.started", "response_id": response_id})
        text = self.reply_text(instructions)
        await self._stream_text(text, text_only, where)
        full = (
            {"type": "text", "text": text} if text_only else {"type": "audio", "transcript": text}
        )
        self.send({"type": "response.content_part.done", **where, "content_index": 0, "part": full})
        content = (
            {"type": "output_text", "text": text}
            if text_only
            else {"type": "output_audio", "transcript": text}
        )
        done_item = item | {"status": "completed", "content": [content]}
        self.items.append(done_item)
        self.send(
            {
                "type": "response.output_item.done",
                "response_id": response_id,
                "output_index": 0,
                "item": done_item,
            }
        )
        self.send(
            {"type": "conversation.item.done", "previous_item_id": previous, "item": done_item}
        )
        response |= {
            "status": "completed",
            "output": [done_item],
            "usage": self._usage(response_id, text, text_only),
        }
        self.send({"type": "response.done", "response": response})
        if not text_only:
            self.send({"type": "output_audio_buffer.stopped", "response_id": response_id})

    async def _stream_text(self, text: str, text_only: bool, where: dict[str, Any]) -> None:
        kind = "response.output_text" if text_only else "response.output_audio_transcript"
        words = text.split(" ")
        for index, word in enumerate(words):
            delta = word if index == len(words) - 1 else word + " "
            self.send({"type": f"{kind}.delta", **where, "content_index": 0, "delta": delta})
            await asyncio.sleep(DELTA_PAUSE_S)
        final = {"text": text} if text_only else {"transcript": text}
        self.send({"type": f"{kind}.done", **where, "content_index": 0, **final})

    def _response(self, response_id: str, modalities: list[str]) -> dict[str, Any]:
        output = self.session.get("audio", {}).get("output", {})
        return {
            "object": "realtime.response",
            "id": response_id,
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "conversation_id": self.conversation_id,
            "output_modalities": modalities,
            "max_output_tokens": self.session.get("max_output_tokens", "inf"),
            "audio": {"output": {"format": output.get("format"), "voice": output.get("voice")}},
            "usage": None,
            "metadata": None,
        }

    def _usage(self, response_id: str, reply: str, text_only: bool) -> dict[str, Any]:
        """The conversation so far as input (the caller's turns as audio), the reply as output,
        and the previous response's input found cached, as a conversation's growing prefix is;
        or what a test scripted. Each one is recorded."""
        earlier = self.items[:-1]
        prompt = " ".join([self.session.get("instructions", ""), *map(_item_text_only, earlier)])
        heard = sum(self._heard_seconds.get(item["id"], 0.0) for item in earlier)
        usage = response_usage(prompt, heard, reply, text_only, self._last_input)
        details = usage["input_token_details"]
        self._last_input = (details["text_tokens"], details["audio_tokens"])
        if self.scripted_responses:
            usage = self.scripted_responses.popleft()
        self.usages.append(
            {
                "kind": "response",
                "response_id": response_id,
                "model": self.session.get("model"),
                "usage": usage,
            }
        )
        self._rate_limits.record(_count(usage.get("total_tokens")))
        return usage


def _parse_event(message: str | bytes) -> dict[str, Any] | None:
    with contextlib.suppress(NotJson):
        event = json_value(message)
        if isinstance(event, dict):
            return event
    return None


def _check_item(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ApiError(
            400,
            "Missing required parameter: 'item'.",
            code="missing_required_parameter",
            param="item",
        )
    kind = item.get("type")
    if kind not in ("message", "function_call", "function_call_output"):
        raise ApiError(400, f"Invalid value: '{kind}'.", code="invalid_value", param="item.type")
    if kind == "message":
        if item.get("role") not in ("user", "assistant", "system"):
            raise ApiError(
                400,
                f"Invalid value: '{item.get('role')}'.",
                code="invalid_value",
                param="item.role",
            )
        if not isinstance(item.get("content"), list):
            raise ApiError(
                400,
                "Missing required parameter: 'item.content'.",
                code="missing_required_parameter",
                param="item.content",
            )
    return item


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _item_text_only(item: dict[str, Any]) -> str:
    """What the model reads of an item as text: a spoken turn is heard, not read."""
    parts = [p for p in item.get("content") or [] if isinstance(p, dict)]
    return _item_text({"content": [p for p in parts if p.get("type") != "input_audio"]})


def _item_text(item: dict[str, Any]) -> str:
    parts = item.get("content") or []
    return " ".join(
        str(part.get("text") or part.get("transcript") or "")
        for part in parts
        if isinstance(part, dict)
    )


def _last_user_text(items: list[dict[str, Any]]) -> str:
    for item in reversed(items):
        if item.get("type") == "message" and item.get("role") == "user":
            return _item_text(item).strip()
    return ""
