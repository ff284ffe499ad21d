"""Keeps botocore's retries inside the Lambda's deadline.

botocore retries on its own and cannot see the deadline: a hook on the client runs before
every attempt and stops a retry that could not finish in time. The first attempt is admitted
by the caller's own time check. One guard per client; `within(deadline)` arms it for one
operation (operations on one client run one at a time in this function).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .deadline import Deadline
from .errors import DependencyUnavailable


class OutOfTime(BotoCoreError):  # type: ignore[misc]  # botocore ships no types
    """Raised before an AWS retry that would not finish inside the Lambda's deadline."""

    fmt = "no time left in the Lambda's budget for another AWS attempt"


class RetryGuard:
    def __init__(self, client: Any, service: str, attempt_seconds: float) -> None:
        self._deadline: Deadline | None = None
        self._attempts = 0
        self._attempt_seconds = attempt_seconds
        client.meta.events.register_first(f"before-send.{service}", self._check_time_left)

    def _check_time_left(self, **_: Any) -> None:
        self._attempts += 1
        if (
            self._attempts > 1
            and self._deadline is not None
            and not self._deadline.allows(self._attempt_seconds)
        ):
            raise OutOfTime()

    @contextmanager
    def within(self, deadline: Deadline | None) -> Iterator[None]:
        self._deadline, self._attempts = deadline, 0
        try:
            yield
        finally:
            self._deadline = None


def unavailable(exc: Exception, dependency: str = "quota_store") -> DependencyUnavailable:
    """A DynamoDB failure as the domain sees it, named by its AWS error code."""
    code = (
        exc.response.get("Error", {}).get("Code", "error")
        if isinstance(exc, ClientError)
        else type(exc).__name__
    )
    # Fail closed: every allowed request costs money, so an unknown count means no.
    return DependencyUnavailable(dependency, f"DynamoDB: {code}", retry_after=2)
