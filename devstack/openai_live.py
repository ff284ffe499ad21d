"""A GPT-Live session in the emulator: the real aiortc peer a create answers, the `oai-events`
data channel with its permission lists, the sidebands attached to it, the scripted voice of
the model, standby, the per-second meter, and the end of the session with its reason.

What the browser may send is `client.data_channel.allowed_client_events`; what it hears is
`allowed_server_events`. A sideband is never restricted: it hears every server event of the
session from the moment it attaches, plus copies of both directions of the audio."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from devstack.openai_live_audio import (
    CHUNK_MS,
    Chunker,
    Tone,
    b64,
    every_chunk,
    level,
    listen,
    speech_rms,
)
from devstack.openai_live_schema import (
    CHANNEL_EVENTS,
    WEBSOCKET_ONLY,
    apply_update,
    check_append,
    check_fields,
    check_type,
    resolve_session,
)
from devstack.openai_live_usage import Meter, backend_usage
from devstack.openai_rtc import (
    DELTA_PAUSE_S,
    EVENTS_CHANNEL,
    ToneTrack,
    answer_offer,
    drain,
    rtc_configuration,
)
from devstack.openai_schema import ApiError, invalid_value, new_id
from devstack.openai_usage import DEFAULT_TRANSCRIPT, text_tokens
from devstack.wire import NotJson, json_value

log = logging.getLogger("openai_emulator.live")

Clock = Callable[[], float]
TICK_S = 0.05  # how often the session looks at its clock (usage, standby, its end)
WORD_MS = 400  # a spoken word on the session's timeline, about 2.5 words a second
# What the emulator takes for the end of a caller's spoken turn: this much speech, then this
# much silence (its stand-in for the model's own judgement of when to answer).
MIN_TURN_S = 0.3
TURN_SILENCE_S = 0.8
USAGE_UPDATES_KEPT = 10_000
REPLY = "Hello from the local Live emulator."
# The error a browser gets for an event its permission list leaves out. OpenAI names no code
# for it in the SDK or its docs (unverified): the emulator reuses the permissions notice's.
REFUSED_CODE = "data_channel_permissions"


class Listener(Protocol):
    """A sideband attached to a session (devstack/openai_live_sideband.py)."""

    def deliver(self, text: str, pcm_bytes: int = 0) -> None: ...

    def end(self) -> None: ...


class LiveSession:
    """One Live session over WebRTC: created by `POST /v1/live/sessions`, ended by
    `session.close` (from the browser if allowed, or a sideband), by the browser closing its
    peer, at `expires_at`, or by the emulator stopping."""

    def __init__(
        self,
        request: dict[str, Any],
        *,
        clock: Clock,
        limit_s: float,
        usage_every_s: float,
        on_closed: Callable[[LiveSession], None] = lambda session: None,
    ) -> None:
        self.id = new_id("live")
        self.clock = clock
        self.created_at = clock()
        self.deadline = self.created_at + limit_s
        self.session = resolve_session(request, self.id, int(self.deadline))
        self.meter = Meter(self.created_at)
        self.usage_every_s = usage_every_s
        self.pc = RTCPeerConnection(rtc_configuration())
        self.channel: RTCDataChannel | None = None
        self.audio_source = "none"
        self.muted = False
        self.closed = False
        self.reason: str | None = None  # close_requested, remote_hangup, expired, connection_lost
        self.ended_at: float | None = None
        self.final_usage: dict[str, int] | None = None
        self.listeners: list[Listener] = []
        self.sidebands_total = 0
        self.sidebands_peak = 0
        self.sideband_audio = {"events": 0, "bytes": 0, "pcm_bytes": 0}
        self.channel_counts = {"events_sent": 0, "events_withheld": 0, "client_events_refused": 0}
        self.usage_updates: list[dict[str, Any]] = []  # every session.usage.updated sent
        self.backend_usages: list[dict[str, Any]] = []  # every delegated backend response
        self.scripted: deque[dict[str, Any]] = deque()  # the next backend usages, if scripted
        self.pauses = 0
        self._on_closed = on_closed
        self._relay = MediaRelay()
        self._remote_audio: MediaStreamTrack | None = None
        self._local_tracks: list[MediaStreamTrack] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._ending: asyncio.Future[None] | None = None
        self.finished = asyncio.Event()  # the end is over: the peer is closed
        self._voice = asyncio.Lock()  # the model says one thing at a time
        self._voice_until_ms = 0
        self._last_activity = self.created_at
        self._next_usage = self.created_at + usage_every_s
        self._turn: tuple[float, float] | None = None  # (first, last) speech of a caller's turn
        self._backend_input = 0  # the last backend prompt, found cached by the next
        self._in_copies, self._out_copies = Chunker(), Chunker()
        self._out_cursor_ms = 0
        wake = self.session.get("wake_policy")
        self._speech_rms = speech_rms(wake["vad_threshold"] if wake else 0.5)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_connection_state)
        self._spawn(self._tick())

    # --- negotiation and media ---------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        return await answer_offer(self.pc, offer_sdp, self._add_audio, param="transport.sdp")

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._remote_audio is None:
            self._remote_audio = track

    def _add_audio(self) -> None:
        if not any(t.kind == "audio" for t in self.pc.getTransceivers()):
            return
        if self._remote_audio is not None:
            # The model's voice is the caller's own, echoed; its copies are the caller's too.
            track = self._relay.subscribe(self._remote_audio, buffered=False)
            self.audio_source = "echo"
            self._spawn(listen(self._relay.subscribe(self._remote_audio), self._on_caller_pcm))
        else:
            track = ToneTrack()
            self.audio_source = "tone"
            tone = Tone()
            self._spawn(every_chunk(lambda: self._copy_output(tone.chunk())))
        self._local_tracks.append(track)
        self.pc.addTrack(track)

    def _on_caller_pcm(self, pcm: bytes) -> None:
        # The sidebands get the caller's audio before muting, as OpenAI reflects it.
        for chunk in self._in_copies.add(pcm) if self.listeners else ():
            self.reflect({"type": "session.input_audio.append", "audio": b64(chunk)}, len(chunk))
        if self.audio_source == "echo":
            for chunk in self._out_copies.add(pcm) if self.listeners else ():
                self._copy_output(chunk)
        if not self.listeners:
            self._in_copies.clear()
            self._out_copies.clear()
        if not self.muted:  # muted, the model hears silence
            self._hear_level(level(pcm))

    def _copy_output(self, chunk: bytes) -> None:
        if not self.listeners or self.pc.connectionState != "connected":
            return  # the model speaks to a connected caller only
        now = self.now_ms()
        start = self._out_cursor_ms if self._out_cursor_ms >= now - 2 * CHUNK_MS else now
        self._out_cursor_ms = start + CHUNK_MS
        event = {
            "type": "session.output_audio.delta",
            "delta": b64(chunk),
            "start_ms": start,
            "end_ms": start + CHUNK_MS,
        }
        self.reflect(event, len(chunk))

    def _hear_level(self, loudness: float) -> None:
        now = time.monotonic()
        if loudness >= self._speech_rms:
            self._wake()
            first = self._turn[0] if self._turn else now
            self._turn = (first, now)
        elif self._turn is not None and now - self._turn[1] >= TURN_SILENCE_S:
            first, last = self._turn
            self._turn = None
            if last - first >= MIN_TURN_S:
                self._spawn(self.hear(DEFAULT_TRANSCRIPT))

    async def _on_connection_state(self) -> None:
        # A browser closing its peer is a clean hangup; a connection that fails, a lost one.
        if self.pc.connectionState == "closed":
            self.request_end("remote_hangup")
        elif self.pc.connectionState == "failed":
            self.request_end("connection_lost")

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- time ---------------------------------------------------------------------------------

    def now_ms(self) -> int:
        """The session's timeline: milliseconds since its create."""
        return int((self.clock() - self.created_at) * 1000)

    async def _tick(self) -> None:
        while not self.closed:
            now = self.clock()
            if now >= self.deadline:
                self.request_end("expired")
                return
            if self._standby_due(now):
                self.meter.pause(now)
                self.pauses += 1
                self.emit({"type": "session.paused"})
            if now >= self._next_usage:
                self._next_usage = now + self.usage_every_s
                self._report_usage(now)
            await asyncio.sleep(TICK_S)

    def _standby_due(self, now: float) -> bool:
        """Standby, kept simple: with `wake_policy` and `idle_timeout_s`, the model pauses once
        neither the caller nor the model has spoken for that long, until either speaks."""
        idle = self.session.get("idle_timeout_s")
        if idle is None or self.meter.paused or self._voice.locked():
            return False
        return bool(now - self._last_activity >= idle)

    def _wake(self) -> None:
        now = self.clock()
        self._last_activity = now
        if self.meter.paused:
            self.meter.resume(now)
            self.emit({"type": "session.resumed"})

    def _report_usage(self, now: float) -> None:
        usage = self.meter.usage(now)
        self.usage_updates.append({"at_s": round(now - self.created_at, 3), "usage": usage})
        del self.usage_updates[:-USAGE_UPDATES_KEPT]
        self.emit({"type": "session.usage.updated", "usage": usage})

    def usage(self) -> dict[str, int]:
        return self.final_usage or self.meter.usage(self.clock())

    # --- who hears what -------------------------------------------------------------------------

    @property
    def permissions(self) -> dict[str, Any]:
        channel = self.session["client"]["data_channel"]
        return {
            "allowed_client_events": channel["allowed_client_events"],
            "allowed_server_events": channel["allowed_server_events"],
            "restricted": channel
            != {
                "allowed_client_events": "all",
                "allowed_server_events": "all",
            },
        }

    def _channel_allows(self, event: dict[str, Any]) -> bool:
        """Whether `allowed_server_events` lets the browser hear `event`. Three kinds of event
        reach it whatever the list says, and never go through here (the emulator's choice,
        OpenAI's rule is unverified): `session.started`, which the browser must wait for before
        it sends anything, the `info` on its permissions, and the errors answering its own
        events."""
        allowed = self.permissions["allowed_server_events"]
        if allowed == "all":
            return True
        nested = event.get("event", {}).get("type") if event["type"] == "response.event" else None
        return any(
            selector["type"] == event["type"]
            and (nested is None or selector.get("response_event") == nested)
            for selector in allowed
        )

    def emit(self, event: dict[str, Any], client_event_id: str | None = None) -> None:
        """A server event of the session: to the browser if its list allows it, and to every
        sideband."""
        full = {"event_id": new_id("event"), **event}
        if client_event_id is not None:
            full["client_event_id"] = client_event_id
        if self._channel_allows(full):
            self._to_channel(full)
        else:
            self.channel_counts["events_withheld"] += 1
        text = json.dumps(full)
        for listener in list(self.listeners):
            listener.deliver(text)

    def _to_channel(self, event: dict[str, Any]) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(event))
            self.channel_counts["events_sent"] += 1

    def reflect(self, event: dict[str, Any], pcm_bytes: int) -> None:
        """A copy of the audio, for the sidebands only, without an event_id (as OpenAI's)."""
        text = json.dumps(event)
        for listener in list(self.listeners):
            listener.deliver(text, pcm_bytes)

    def attach(self, listener: Listener) -> None:
        self.listeners.append(listener)
        self.sidebands_total += 1
        self.sidebands_peak = max(self.sidebands_peak, len(self.listeners))

    def detach(self, listener: Listener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    def count_sideband_audio(self, wire_bytes: int, pcm_bytes: int) -> None:
        self.sideband_audio["events"] += 1
        self.sideband_audio["bytes"] += wire_bytes
        self.sideband_audio["pcm_bytes"] += pcm_bytes

    # --- the data channel ---------------------------------------------------------------------

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != EVENTS_CHANNEL or self.channel is not None or self.closed:
            return
        self.channel = channel
        channel.on("message", lambda message: self.receive(message, None))
        # The create started the session: the browser learns it here, and only here (a
        # sideband attaches later and is told what changes, not how it began).
        self._to_channel(
            {"event_id": new_id("event"), "type": "session.started", "session": self.session}
        )
        permissions = self.permissions
        if permissions["restricted"]:
            clients = permissions["allowed_client_events"]
            servers = permissions["allowed_server_events"]
            sends = "every client event" if clients == "all" else ", ".join(clients) or "nothing"
            hears = (
                "every server event"
                if servers == "all"
                else ", ".join(s["type"] for s in servers) or "no server events"
            )
            message = f"This data channel may send: {sends}. It receives: {hears}."
            self._to_channel(
                {
                    "event_id": new_id("event"),
                    "type": "info",
                    "code": "data_channel_permissions",
                    "message": message,
                }
            )

    def receive(self, message: str | bytes, origin: Listener | None) -> None:
        """A client event from the browser's channel (origin None) or a sideband: an error goes
        back to whoever sent the event, what it changes is told to everyone."""
        if self.closed:
            return  # closing rejects new commands; the connections go with it
        event: Any = None
        with contextlib.suppress(NotJson):
            event = json_value(message)
        if not isinstance(event, dict):
            self._reply_error(
                ApiError(400, "The event is not a JSON object.", code="invalid_json"), None, origin
            )
            return
        client_event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        try:
            kind = check_type(event)
            self._check_origin(kind, origin)  # what may not be sent is refused unread
            client_event_id = check_fields(kind, event)
            self._dispatch(kind, event, client_event_id)
        except ApiError as error:
            self._reply_error(error, client_event_id, origin)

    def _check_origin(self, kind: str, origin: Listener | None) -> None:
        if kind in WEBSOCKET_ONLY:
            raise invalid_value(
                "type",
                kind,
                "A WebRTC session is started by its create and sends audio on its media track; "
                "this event belongs to the primary WebSocket.",
            )
        if origin is not None:
            return  # a sideband may send every other client event
        if kind not in CHANNEL_EVENTS:
            raise invalid_value("type", kind, "This event is for a sideband, not a data channel.")
        allowed = self.permissions["allowed_client_events"]
        if allowed != "all" and kind not in allowed:
            self.channel_counts["client_events_refused"] += 1
            raise ApiError(
                400,
                f"This data channel may not send '{kind}' (client.data_channel."
                "allowed_client_events).",
                code=REFUSED_CODE,
                param="type",
            )

    def _reply_error(
        self, error: ApiError, client_event_id: str | None, origin: Listener | None
    ) -> None:
        detail = {
            "type": error.type,
            "code": error.code,
            "message": error.message,
            "param": error.param,
        }
        if client_event_id is not None:
            detail["client_event_id"] = client_event_id
        event: dict[str, Any] = {"event_id": new_id("event"), "type": "error", "error": detail}
        if client_event_id is not None:
            event["client_event_id"] = client_event_id
        if origin is None:
            self._to_channel(event)
        else:
            origin.deliver(json.dumps(event))

    def _dispatch(self, kind: str, event: dict[str, Any], client_event_id: str | None) -> None:
        if kind == "session.update":
            self.session = apply_update(self.session, event["session"])
            self.emit({"type": "session.updated", "session": self.session}, client_event_id)
        elif kind in ("session.input_audio.mute", "session.input_audio.unmute"):
            # Muted, the model hears silence; it may still speak, and billing goes on.
            self.muted = kind.endswith(".mute")
            self._turn = None
            self.emit({"type": kind.replace("mute", "muted")}, client_event_id)
        elif kind.startswith("session.") and kind.endswith(".append"):
            self._append(kind, event, client_event_id)
        elif kind == "response.create":
            self._require_responses(kind)
            self._spawn(self.delegate("", client_event_id))
        elif kind == "response.item.create":
            self._require_responses(kind)
            if not isinstance(event["item"], dict):
                raise ApiError(400, "'item' must be an object.", code="invalid_type", param="item")
            # Kept for the backend's next response: OpenAI acknowledges nothing here.
        elif kind == "session.close":
            self.request_end("close_requested", client_event_id)
        else:
            raise ApiError(
                400,
                f"The local Live emulator does not implement '{kind}'.",
                code="unsupported_event",
                param="type",
            )

    def _append(self, kind: str, event: dict[str, Any], client_event_id: str | None) -> None:
        """Instructions steer and are spoken to (the emulator says so, as the model would
        follow them); thinking is silent context; commentary is said as given."""
        content = check_append(event)
        if event["delegation_id"] is not None:
            # The emulator never hands work to the client, and a Responses backend takes none.
            raise invalid_value("delegation_id", event["delegation_id"], "No such delegation.")
        at = self.now_ms()
        self.emit({"type": kind + "ed", "start_ms": at, "end_ms": at}, client_event_id)
        if kind == "session.instructions.append":
            self._spawn(self.say(f"As instructed: {content}"))
        elif kind == "session.commentary.append":
            self._spawn(self.say(content))

    def _require_responses(self, kind: str) -> None:
        if self.session["delegation"]["type"] != "responses":
            raise ApiError(
                400,
                f"'{kind}' needs a Responses delegation; this session delegates to "
                f"'{self.session['delegation']['type']}'.",
                code="invalid_value",
                param="type",
            )

    # --- the conversation ------------------------------------------------------------------------

    async def say(self, text: str) -> None:
        """The model speaks: its transcript, word by word, on the session's timeline."""
        async with self._voice:
            if self.closed:
                return
            self._wake()
            start = max(self.now_ms(), self._voice_until_ms)
            words = text.split(" ")
            for index, word in enumerate(words):
                delta = word if index == len(words) - 1 else word + " "
                event = {
                    "type": "session.output_transcript.delta",
                    "delta": delta,
                    "start_ms": start,
                    "end_ms": start + WORD_MS,
                }
                self.emit(event)
                start += WORD_MS
                await asyncio.sleep(DELTA_PAUSE_S)
            self._voice_until_ms = start
            self._wake()

    async def hear(self, text: str) -> None:
        """The caller says `text` (its microphone's turn, or a test's script): its transcript,
        the backend's work when the session delegates to Responses, then the model's reply."""
        if self.closed or self.muted:
            return
        self._wake()
        words = text.split(" ")
        start = max(0, self.now_ms() - WORD_MS * len(words))
        for index, word in enumerate(words):
            delta = word if index == len(words) - 1 else word + " "
            event = {
                "type": "session.input_transcript.delta",
                "delta": delta,
                "start_ms": start,
                "end_ms": start + WORD_MS,
            }
            self.emit(event)
            start += WORD_MS
        if self.session["delegation"]["type"] == "responses":
            await self.delegate(text)
        await self.say(f"{REPLY} You said: {text}")

    async def delegate(self, prompt: str, client_event_id: str | None = None) -> None:
        """The model hands work to its Responses backend: the delegation, then the backend's
        stream as `response.event`s, the last of them terminal with the response's usage (the
        next scripted one, or counted from the prompt, the previous prompt found cached)."""
        if self.closed:
            return
        settings = self.session["delegation"]["responses"]
        delegation_id, response_id = new_id("deleg"), new_id("resp")
        if self.scripted:
            scripted = self.scripted.popleft()
            status, usage = scripted["status"], scripted["usage"]
        else:
            backend_prompt = " ".join(
                [settings.get("instructions") or "", self.session["instructions"], prompt]
            )
            tokens = text_tokens(backend_prompt)
            usage = backend_usage(
                tokens, text_tokens(f"{REPLY} You said: {prompt}"), min(self._backend_input, tokens)
            )
            self._backend_input = tokens
            status = "completed"
        self.emit(
            {
                "type": "session.delegation.created",
                "offset_ms": self.now_ms(),
                "delegation": {
                    "id": delegation_id,
                    "type": "delegation",
                    "target": "responses",
                    "response_id": response_id,
                },
            },
            client_event_id,
        )
        response = self._backend_response(response_id, settings)
        created = {"type": "response.created", "sequence_number": 0, "response": response}
        self.emit({"type": "response.event", "delegation_id": delegation_id, "event": created})
        await asyncio.sleep(DELTA_PAUSE_S)
        final = response | {"status": status, "usage": usage}
        if status == "incomplete":
            final["incomplete_details"] = {"reason": "max_output_tokens"}
        elif status == "failed":
            final["error"] = {"code": "server_error", "message": "The backend failed (scripted)."}
        terminal = {"type": f"response.{status}", "sequence_number": 1, "response": final}
        self.emit({"type": "response.event", "delegation_id": delegation_id, "event": terminal})
        self.backend_usages.append(
            {
                "response_id": response_id,
                "delegation_id": delegation_id,
                "model": settings["model"],
                "status": status,
                "usage": usage,
            }
        )

    def _backend_response(self, response_id: str, settings: dict[str, Any]) -> dict[str, Any]:
        # A lifecycle snapshot, as Live sends it: no input, instructions, tools or output.
        return {
            "id": response_id,
            "object": "response",
            "created_at": int(self.clock()),
            "status": "in_progress",
            "model": settings["model"],
            "output": [],
            "instructions": None,
            "tools": [],
            "tool_choice": settings.get("tool_choice", "auto"),
            "parallel_tool_calls": settings.get("parallel_tool_calls", True),
            "error": None,
            "incomplete_details": None,
            "metadata": {},
            "usage": None,
        }

    def run_script(self, says: list[str], responses: list[dict[str, Any]]) -> None:
        """A test's script (/__emulator/live/sessions/{id}/script): the caller's words in order
        (each turn delegated, with a Responses backend), then a delegation of its own for each
        scripted backend usage left over."""
        if responses and self.session["delegation"]["type"] != "responses":
            raise invalid_value(
                "responses", "...", "Backend usages need a session that delegates to Responses."
            )
        self.scripted.extend(responses)
        self._spawn(self._play_script(says))

    async def _play_script(self, says: list[str]) -> None:
        for text in says:
            await self.hear(text)
        while self.scripted and not self.closed:
            await self.delegate("")

    # --- the end ---------------------------------------------------------------------------------

    def request_end(self, reason: str, client_event_id: str | None = None) -> None:
        # Not one of self._tasks: the end cancels those, and must not cancel itself.
        if self._ending is None and not self.closed:
            self._ending = asyncio.ensure_future(self.end(reason, client_event_id))

    async def end(self, reason: str, client_event_id: str | None = None) -> None:
        """`session.closed` with the reason, the final session and the final usage, to the
        browser (if its list allows) and to every sideband; then every connection ends."""
        if self.closed:
            return
        self.closed = True
        self.reason = reason
        now = self.ended_at = self.clock()
        self.meter.resume(now)
        self.final_usage = self.meter.usage(now)
        self.emit(
            {
                "type": "session.closed",
                "reason": reason,
                "session": self.session,
                "usage": self.final_usage,
            },
            client_event_id,
        )
        for listener in list(self.listeners):
            listener.end()
        for task in list(self._tasks):
            task.cancel()
        self._on_closed(self)  # ended for the emulator's state at once, whatever follows
        log.info("live session %s ended: %s, %s", self.id, reason, self.final_usage)
        try:
            await drain(self.channel)
            for track in self._local_tracks:
                track.stop()
            await self.pc.close()
        finally:
            self.finished.set()

    async def discard(self) -> None:
        """A create that failed (its offer refused): the session never was."""
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        await self.pc.close()
        self.finished.set()

    def describe(self) -> dict[str, Any]:
        """The session as /__emulator/state shows it."""
        now = self.ended_at if self.ended_at is not None else self.clock()
        return {
            "id": self.id,
            "model": self.session["model"],
            "created_at": self.created_at,
            "expires_at": self.session["expires_at"],
            "ended_by": self.reason,
            "seconds": round(now - self.created_at, 3),
            "usage": self.usage(),
            "usage_updates": list(self.usage_updates),
            "backend_usages": list(self.backend_usages),
            "session": self.session,
            "permissions": self.permissions,
            "channel": dict(self.channel_counts),
            "audio": self.audio_source,
            "muted": self.muted,
            "standby": {"paused": self.meter.paused, "pauses": self.pauses},
            "sidebands": len(self.listeners),
            "sidebands_total": self.sidebands_total,
            "sidebands_peak": self.sidebands_peak,
            "sideband_audio": dict(self.sideband_audio),
        }
