"""The sideband of the Realtime emulator: `GET /v1/realtime?call_id=rtc_...` upgraded to a
WebSocket with the standard key (docs/openai-contract.md §7). A server watches and steers a live
call through it: it hears every server event of the call except the caller's own handshake
(no `session.created`), and may send `session.update`, `response.create`,
`conversation.item.create` and the rest of the client events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from devstack.openai_schema import ApiError, refuse_beta_shape

if TYPE_CHECKING:
    from devstack.openai_emulator import Emulator
    from devstack.openai_rtc import Call

log = logging.getLogger("openai_emulator.sideband")

QUEUE_LIMIT = 10_000  # a sideband that stops reading is dropped, not allowed to grow forever
CLOSE_WAIT_S = 2.0


class Sideband:
    """One attached WebSocket: events queue here and one writer task sends them in order."""

    def __init__(self, call: Call, ws: web.WebSocketResponse) -> None:
        self.call = call
        self.ws = ws
        self.queue: asyncio.Queue[dict[str, Any] | tuple[int, str]] = asyncio.Queue()
        self.ended = False

    def deliver(self, event: dict[str, Any]) -> None:
        if self.ended:
            return
        if self.queue.qsize() >= QUEUE_LIMIT:
            self.end(1008, "The sideband stopped reading its events.")
            return
        self.queue.put_nowait(event)

    def end(self, code: int, reason: str) -> None:
        """Closes after what is already queued has left (the session_expired error first)."""
        if self.ended:
            return
        self.ended = True
        self.queue.put_nowait((code, reason))

    async def write(self) -> None:
        while True:
            item = await self.queue.get()
            if isinstance(item, tuple):
                code, reason = item
                await self.ws.close(code=code, message=reason.encode())
                return
            if self.ws.closed:
                return
            with contextlib.suppress(ConnectionError):
                await self.ws.send_str(json.dumps(item))


def not_found() -> ApiError:
    return ApiError(
        404,
        "No session found for the provided call_id.",
        code="call_id_not_found",
        param="call_id",
    )


def find_call(emulator: Emulator, request: web.Request) -> Call:
    """The credential first, as OpenAI does; then the call it may watch."""
    from devstack.openai_emulator import bearer, invalid_key  # the emulator imports us

    kind = emulator.auth_kind(request)
    if kind in ("missing", "invalid"):
        raise invalid_key(bearer(request))
    call_id = request.query.get("call_id")
    if not call_id:
        raise ApiError(
            400,
            "Missing required parameter: 'call_id'. The local emulator has no WebSocket "
            "transport of its own; it only attaches sidebands to WebRTC calls.",
            code="missing_required_parameter",
            param="call_id",
        )
    call = emulator.calls.get(call_id)
    # An ephemeral key cannot attach (reported: 404 call_id_not_found), even to its own call.
    if kind != "server_key" or call is None or call.closed:
        raise not_found()
    refuse_beta_shape(request.headers)
    return call


async def open_sideband(emulator: Emulator, request: web.Request) -> web.StreamResponse:
    call = find_call(emulator, request)
    ws = web.WebSocketResponse(heartbeat=None, autoping=True)
    if not ws.can_prepare(request).ok:
        raise ApiError(
            400,
            "Expected a WebSocket upgrade.",
            code="websocket_upgrade_required",
        )
    await ws.prepare(request)
    sideband = Sideband(call, ws)
    call.attach(sideband)
    emulator.sidebands_total += 1
    log.info("sideband attached to %s", call.id)
    writer = asyncio.ensure_future(sideband.write())
    try:
        # No session.created here (3c); the full session comes with every session.updated.
        async for message in ws:
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                call.receive(message.data, sideband)
            else:
                break
    finally:
        call.detach(sideband)
        sideband.end(1000, "")
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            await asyncio.wait_for(writer, CLOSE_WAIT_S)
        writer.cancel()
        log.info("sideband left %s (close code %s)", call.id, ws.close_code)
    return ws
