"""The sideband of a call: a Realtime call's `wss://…/v1/realtime?call_id=` (docs/openai-contract.md
§7), a GPT-Live session's `wss://…/v1/live/sessions/{id}/attach` (docs/live.md), both with the
standard key and no `OpenAI-Beta` header. A small synchronous adapter over `websockets`: events
in as dicts, events out, and every way the socket can end mapped to one exception.

A Live sideband also carries copies of the caller's and the model's audio (about 128 KB/s of
base64 JSON, with no documented way to opt out). The watcher needs none of it: such a message
is recognised by its first bytes and dropped unparsed (docs/live.md, "The sideband's audio").
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from ..core.openai_key import OpenAICredentials
from ..core.parsing import json_object

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # a session.updated carries the whole session
OPEN_TIMEOUT = 5.0
# The audio copies of a Live sideband, by their type when it comes first (as OpenAI sends
# it); one with its type later is parsed, and ignored by the watcher all the same.
AUDIO_COPY = re.compile(
    r'^\{\s*"type"\s*:\s*"session\.(?:output_audio\.delta|input_audio\.append)"'
)
AUDIO_EVENT = {"type": "audio"}  # what recv returns for one: no payload kept


class SidebandClosed(Exception):
    """The socket ended: `code` is the close code (None when it dropped without one)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"sideband closed ({code}): {reason[:200]}")
        self.code = code
        self.reason = reason


class SidebandRefused(Exception):
    """The upgrade was refused (`status`, e.g. 404 call_id_not_found) or never completed."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(f"sideband refused ({status}): {detail[:200]}")
        self.status = status


def sideband_url(base_url: str, call_id: str, family: str = "realtime") -> str:
    parts = urlsplit(base_url.rstrip("/"))
    scheme = "wss" if parts.scheme == "https" else "ws"
    if family == "live":
        path = f"{parts.path}/live/sessions/{quote(call_id, safe='')}/attach"
        return urlunsplit((scheme, parts.netloc, path, "", ""))
    return urlunsplit(
        (scheme, parts.netloc, parts.path + "/realtime", f"call_id={quote(call_id)}", "")
    )


class Sideband:
    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection

    @classmethod
    def open(
        cls,
        base_url: str,
        credentials: OpenAICredentials,
        call_id: str,
        timeout: float = OPEN_TIMEOUT,
        family: str = "realtime",
    ) -> Sideband:
        try:
            connection = connect(
                sideband_url(base_url, call_id, family),
                additional_headers=credentials.headers(),
                open_timeout=timeout,
                close_timeout=2,
                max_size=MAX_MESSAGE_BYTES,
                proxy=None,
                user_agent_header="realtime-token-vendor-watcher",
                # The connection outlives this call (recv and send come later), so it is not
                # used as a context manager: websockets 17.1 deprecated that without the flag.
                legacy=True,
            )
        except InvalidStatus as exc:
            raise SidebandRefused(exc.response.status_code, _error_code(exc)) from None
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            raise SidebandRefused(None, type(exc).__name__) from None
        return cls(connection)

    def recv(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None if none came within `timeout` seconds."""
        try:
            message = self._connection.recv(timeout=max(timeout, 0.0))
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            raise _closed(exc) from None
        head = message[:96]
        if AUDIO_COPY.match(head if isinstance(head, str) else head.decode("utf-8", "replace")):
            return dict(AUDIO_EVENT)
        try:
            return json_object(message)
        except ValueError:  # not JSON (nesting deep enough to exhaust the parser included)
            return {"type": "invalid"}

    def send(self, event: dict[str, Any]) -> None:
        try:
            self._connection.send(json.dumps(event))
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    def close(self) -> None:
        self._connection.close()


def _closed(exc: ConnectionClosed) -> SidebandClosed:
    frame = exc.rcvd
    return SidebandClosed(frame.code if frame else None, frame.reason if frame else "")


def _error_code(exc: InvalidStatus) -> str:
    # OpenAI's envelope names the reason (call_id_not_found); never echo anything else.
    try:
        body = json.loads(exc.response.body or b"{}")
        code = body.get("error", {}).get("code")
    except (ValueError, AttributeError):
        code = None
    return str(code) if isinstance(code, str) else "refused"
