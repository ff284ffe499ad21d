"""The call watcher's function, from the token function: starting a call's watcher (Lambda's
asynchronous Invoke with the call's watch event, `core.jobs`; no retries: Lambda's async
invoke is configured with none, and a duplicate start is harmless, the lease admits one
watcher), and closing a GPT-Live session (a synchronous Invoke: only the watcher's function
can open the session's sideband, where OpenAI documents `session.close` for WebRTC).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..core.deadline import Deadline
from ..core.errors import DependencyUnavailable
from ..core.ids import CallId, UserId


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


class LiveCloser:
    """Ends a GPT-Live session through the call watcher's function (its `close` action: it
    attaches a sideband, sends `session.close` and reads until `session.closed`)."""

    def __init__(self, client: Any, function: str) -> None:
        self._client = client
        self._function = function

    def hang_up(self, call_id: CallId, deadline: Deadline, user: UserId | None = None) -> bool:
        """True when this request closed the session; False when it was gone already. A
        failure to learn either is raised (the session may live on). The session's final
        usage is charged to `user` by the watcher's function."""
        if not deadline.allows(1.0):
            raise DependencyUnavailable("watcher", "no time left to close the session", 1)
        seconds = deadline.cap(8.0)
        event: dict[str, Any] = {"action": "close", "call_id": call_id, "seconds": seconds}
        if user is not None:
            event["user"] = user
        try:
            reply = self._client.invoke(
                FunctionName=self._function,
                InvocationType="RequestResponse",
                Payload=json.dumps(event, separators=(",", ":")).encode(),
            )
            answer = json.loads(reply["Payload"].read())
        except (ClientError, BotoCoreError, ValueError, KeyError) as exc:
            raise DependencyUnavailable("watcher", type(exc).__name__, 2) from None
        if reply.get("FunctionError") or not isinstance(answer, dict) or "closed" not in answer:
            raise DependencyUnavailable("watcher", "the session could not be closed", 2)
        return bool(answer["closed"])
