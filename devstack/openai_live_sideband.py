"""The Live sideband: `GET /v1/live/sessions/{session_id}/attach` upgraded to a WebSocket with
the standard key. A server watches and steers a Live session through it: it hears every server
event from the moment it attaches (no `session.started`: that was the browser's), copies of
the caller's and the model's audio, and `session.closed` at the end, whatever the reason; it
may send the sideband's client events (`session.update`, `session.instructions.append`,
`session.close`...). Several may attach at once; each one leaving ends nothing.

When the session ends, a sideband that attached with `?graceful_close=true` gets a close
frame (1000) after `session.closed`; one that did not is cut without a closing handshake once
its last event has left (a client learns the end from `session.closed`, never from the socket:
the stricter reading of an unverified behaviour)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from devstack.openai_schema import ApiError, invalid_value

if TYPE_CHECKING:
    from devstack.openai_emulator import Emulator
    from devstack.openai_live import LiveSession

log = logging.getLogger("openai_emulator.live_sideband")

# Events a sideband may leave unread before it is dropped (about 100 s of audio copies).
QUEUE_LIMIT = 2_000
CLOSE_WAIT_S = 2.0


class LiveSideband:
    """One attached WebSocket: events queue here, already serialized, and one writer task
    sends them in order, counting the audio copies' bytes for /__emulator/state."""

    def __init__(
        self, session: LiveSession, ws: web.WebSocketResponse, request: web.Request, graceful: bool
    ) -> None:
        self.session = session
        self.ws = ws
        self.request = request
        self.graceful = graceful
        self.queue: asyncio.Queue[tuple[str, int] | None] = asyncio.Queue()
        self.ended = False
        self.overflowed = False

    def deliver(self, text: str, pcm_bytes: int = 0) -> None:
        if self.ended:
            return
        if self.queue.qsize() >= QUEUE_LIMIT:
            self.overflowed = True
            self.end()
            return
        self.queue.put_nowait((text, pcm_bytes))

    def end(self) -> None:
        """Closes after what is already queued has left (`session.closed` last)."""
        if not self.ended:
            self.ended = True
            self.queue.put_nowait(None)

    async def write(self) -> None:
        while (item := await self.queue.get()) is not None:
            if self.ws.closed:
                return
            text, pcm_bytes = item
            with contextlib.suppress(ConnectionError):
                await self.ws.send_str(text)
                if pcm_bytes:
                    self.session.count_sideband_audio(len(text), pcm_bytes)
        if self.overflowed:
            await self.ws.close(code=1008, message=b"The sideband stopped reading its events.")
        elif self.graceful:
            await self.ws.close(code=1000, message=b"The session ended.")
        elif (transport := self.request.transport) is not None:
            transport.close()  # what was written still leaves; no close frame follows it


def not_found(session_id: str) -> ApiError:
    # OpenAI's code for an unknown Live session is unverified.
    return ApiError(
        404,
        f"No Live session found with id '{session_id}'.",
        code="session_not_found",
        param="session_id",
    )


def graceful_close(request: web.Request) -> bool:
    value = request.query.get("graceful_close", "false")
    if value not in ("true", "false"):
        raise invalid_value("graceful_close", value, ["true", "false"])
    return value == "true"


def find_session(emulator: Emulator, request: web.Request) -> LiveSession:
    """The credential first, as OpenAI does: only the project's standard key attaches (Live
    has no client secrets); then the session, while it lasts."""
    from devstack.openai_emulator import require_server_key  # the emulator imports us

    require_server_key(emulator, request)
    session_id = request.match_info["session_id"]
    session = emulator.live_sessions.get(session_id)
    if session is None or session.closed:
        raise not_found(session_id)
    return session


async def open_live_sideband(emulator: Emulator, request: web.Request) -> web.StreamResponse:
    session = find_session(emulator, request)
    graceful = graceful_close(request)
    ws = web.WebSocketResponse(heartbeat=None, autoping=True, max_msg_size=4 << 20)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "Expected a WebSocket upgrade.", code="websocket_upgrade_required")
    await ws.prepare(request)
    sideband = LiveSideband(session, ws, request, graceful)
    session.attach(sideband)
    log.info("sideband attached to %s (graceful_close: %s)", session.id, graceful)
    writer = asyncio.ensure_future(sideband.write())
    try:
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                session.receive(message.data, sideband)
            else:
                break
    finally:
        session.detach(sideband)
        sideband.end()
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            await asyncio.wait_for(writer, CLOSE_WAIT_S)
        writer.cancel()
        log.info("sideband left %s (close code %s)", session.id, ws.close_code)
    return ws
