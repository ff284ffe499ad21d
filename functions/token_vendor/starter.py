"""Starting a call's watcher: Lambda's asynchronous Invoke of CallWatcherFunction.

The event is built here for both callers: the token function when it admits a call, and a
watcher that hands its call over to its successor (the lease then names the successor's
`token`). No retries: Lambda's async invoke is configured with none, and a duplicate start is
harmless anyway (the lease admits one watcher).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError


def watch_event(
    call_id: str,
    user: str,
    profile: str,
    session: dict[str, Any],
    on_session_change: str,
    ends_at: float,
    token: str | None = None,
    handovers: int = 0,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "action": "watch",
        "call_id": call_id,
        "user": user,
        "profile": profile,
        "session": session,
        "on_session_change": on_session_change,
        "ends_at": ends_at,
        "handovers": handovers,
    }
    if token is not None:
        event["token"] = token
    return event


class WatcherStarter:
    def __init__(self, client: Any, function: str, log: logging.Logger | Any = None) -> None:
        self._client = client
        self._function = function
        self._log = log or logging.getLogger(__name__)

    def start(self, event: dict[str, Any]) -> bool:
        """True when Lambda accepted the event (202). A failure is logged, never raised: the
        call's scheduled deadline holds without a watcher."""
        try:
            reply = self._client.invoke(
                FunctionName=self._function,
                InvocationType="Event",
                Payload=json.dumps(event, separators=(",", ":")).encode(),
            )
        except (ClientError, BotoCoreError) as exc:
            self._log.error("watcher not started", extra={"error": type(exc).__name__})
            return False
        return bool(reply.get("StatusCode") == 202)
