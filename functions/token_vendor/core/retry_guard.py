"""Keeps botocore's retries inside the Lambda's deadline.

botocore retries on its own and cannot see the deadline: a hook on the client runs before
every attempt and stops a retry that could not finish in time. The first attempt is admitted
by the caller's own time check. `within(deadline)` arms a guard for one operation on the
calling thread: several guards share one client (the quota, the call ledger, the spend
ledger) and a call's admission reads the spend on another thread at the same time, so each
guard counts only the attempts made on the thread that armed it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .deadline import Deadline
from .errors import DependencyUnavailable


class OutOfTime(BotoCoreError):  # type: ignore[misc]  # botocore ships no types
    """Raised before an AWS retry that would not finish inside the Lambda's deadline."""

    fmt = "no time left in the Lambda's budget for another AWS attempt"


class _Armed(threading.local):
    deadline: Deadline | None = None
    attempts = 0


class RetryGuard:
    def __init__(self, client: Any, service: str, attempt_seconds: float) -> None:
        self._armed = _Armed()
        self._attempt_seconds = attempt_seconds
        client.meta.events.register_first(f"before-send.{service}", self._check_time_left)

    def _check_time_left(self, **_: Any) -> None:
        armed = self._armed  # botocore runs the hook on the thread that sends the request
        if armed.deadline is None:
            return
        armed.attempts += 1
        if armed.attempts > 1 and not armed.deadline.allows(self._attempt_seconds):
            raise OutOfTime()

    @contextmanager
    def within(self, deadline: Deadline | None) -> Iterator[None]:
        armed = self._armed
        armed.deadline, armed.attempts = deadline, 0
        try:
            yield
        finally:
            armed.deadline = None


def unavailable(exc: Exception, dependency: str = "quota_store") -> DependencyUnavailable:
    """A DynamoDB failure as the domain sees it, named by its AWS error code."""
    code = (
        exc.response.get("Error", {}).get("Code", "error")
        if isinstance(exc, ClientError)
        else type(exc).__name__
    )
    # Fail closed: every allowed request costs money, so an unknown count means no.
    return DependencyUnavailable(dependency, f"DynamoDB: {code}", retry_after=2)
