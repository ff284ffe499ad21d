"""EventBridge Scheduler: the one-time schedule that ends a call at its deadline.

Each admitted call gets an `at()` schedule in the function's schedule group, flexible window
off, deleted after it runs, whose target is this very function (its ARN comes from the
invocation's context, so the template needs no reference from the function to itself) with
the hangup event as input. Scheduler fires an `at()` schedule somewhere inside the unit of
its precision (60 s in AWS: "at 1:00" runs between 1:00:00 and 1:00:59), so `fire_time`
picks the unit that ends no later than the promised end.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .deadline import Deadline
from .errors import DependencyUnavailable
from .retry_guard import RetryGuard

ATTEMPT_SECONDS = 3.0  # connect and read timeouts of deps.SCHEDULER_CONFIG
# Scheduler retries a failed invocation (a throttle, a cold start that failed) with backoff
# for up to ten minutes; the hangup itself is idempotent.
RETRY_POLICY = {"MaximumRetryAttempts": 5, "MaximumEventAgeInSeconds": 600}
_NAME = re.compile(r"^[0-9A-Za-z_.-]{1,59}$")


def call_deadline(started: float, max_call_seconds: int, precision: int) -> int:
    """The promised end (`Call-Ends-At`): the last unit boundary at or before
    `started + max_call_seconds`. The schedule fires inside the unit before it, so the call
    is ended by then and never runs longer than the profile allows."""
    return int((started + max_call_seconds) // precision * precision)


def fire_time(ends_at: int, precision: int) -> int:
    """The at() time: the start of the unit that ends at `ends_at`."""
    return ends_at - precision


def schedule_name(call_id: str) -> str:
    """One schedule per call, named after it (hashed when OpenAI's id does not fit)."""
    if _NAME.match(call_id):
        return f"call-{call_id}"
    return "call-" + hashlib.sha256(call_id.encode()).hexdigest()[:40]


class HangupScheduler:
    def __init__(self, client: Any, group: str, role_arn: str) -> None:
        self._client = client
        self._group = group
        self._role_arn = role_arn
        self._guard = RetryGuard(client, "scheduler", ATTEMPT_SECONDS)

    def create(
        self, call_id: str, user: str, at: int, function_arn: str, deadline: Deadline
    ) -> None:
        """Raises DependencyUnavailable when the schedule cannot be created."""
        name = schedule_name(call_id)
        when = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        event = {"action": "hangup", "call_id": call_id, "user": user}
        if not deadline.allows(ATTEMPT_SECONDS):
            raise DependencyUnavailable("scheduler", "no time left to schedule the hangup", 1)
        with self._guard.within(deadline):
            try:
                self._client.create_schedule(
                    Name=name,
                    GroupName=self._group,
                    ScheduleExpression=f"at({when})",
                    ScheduleExpressionTimezone="UTC",
                    FlexibleTimeWindow={"Mode": "OFF"},
                    ActionAfterCompletion="DELETE",
                    State="ENABLED",
                    Description="Ends a server-owned Realtime call at its deadline",
                    Target={
                        "Arn": function_arn,
                        "RoleArn": self._role_arn,
                        "Input": json.dumps(event, separators=(",", ":")),
                        "RetryPolicy": RETRY_POLICY,
                    },
                    # botocore's own retries of this request stay one schedule.
                    ClientToken=name[:64],
                )
            except (ClientError, BotoCoreError) as exc:
                raise DependencyUnavailable("scheduler", _reason(exc), retry_after=5) from None

    def delete(self, call_id: str, deadline: Deadline) -> bool:
        """The call ended early: its schedule goes. False if it was gone or could not go
        (it would then fire, find the call ended, and settle quietly)."""
        if not deadline.allows(ATTEMPT_SECONDS):
            return False
        with self._guard.within(deadline):
            try:
                self._client.delete_schedule(Name=schedule_name(call_id), GroupName=self._group)
            except (ClientError, BotoCoreError):
                return False
        return True


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return f"Scheduler: {exc.response.get('Error', {}).get('Code', 'error')}"
    return f"Scheduler: {type(exc).__name__}"
