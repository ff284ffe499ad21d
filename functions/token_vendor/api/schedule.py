"""EventBridge Scheduler: the one-time schedules that guarantee a call's end.

Each admitted call gets two `at()` schedules in the function's schedule group, flexible window
off, deleted after they run, whose target is this very function (its ARN comes from the
invocation's context, so the template needs no reference from the function to itself):
- the deadline (`call-<id>`, event `{"action": "hangup", ...}`): ends the call at `Call-Ends-At`;
- the backstop (`watch-<id>`, event `{"action": "backstop", ...}`), shortly after the watcher's
  attach window: ends the call if no watcher holds it (a start lost in Lambda's queue).
Scheduler fires an `at()` schedule somewhere inside the unit of its precision (60 s in AWS:
"at 1:00" runs between 1:00:00 and 1:00:59), so `fire_time` picks the unit that ends no later
than the promised end. A delivery that fails after the retry policy goes to the dead-letter
queue (HANGUP_FAILURES_QUEUE), which is alarmed and can be replayed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..core.aws import ATTEMPT_SECONDS
from ..core.deadline import Deadline
from ..core.errors import DependencyUnavailable
from ..core.ids import CallId, UserId
from ..core.retry_guard import RetryGuard

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


KINDS = {"hangup": "call", "backstop": "watch"}  # the event's action: the name's prefix
DESCRIPTIONS = {
    "hangup": "Ends a server-owned Realtime call at its deadline",
    "backstop": "Ends a server-owned Realtime call no watcher holds",
}


def schedule_name(call_id: str, action: str = "hangup") -> str:
    """One schedule of each kind per call, named after it (hashed when OpenAI's id does not
    fit)."""
    prefix = KINDS[action]
    if _NAME.match(call_id):
        return f"{prefix}-{call_id}"
    return f"{prefix}-" + hashlib.sha256(call_id.encode()).hexdigest()[:40]


class HangupScheduler:
    def __init__(
        self, client: Any, group: str, role_arn: str, dead_letters: str | None = None
    ) -> None:
        self._client = client
        self._group = group
        self._role_arn = role_arn
        self._dead_letters = dead_letters  # an SQS queue's ARN
        self._guard = RetryGuard(client, "scheduler", ATTEMPT_SECONDS)

    def create(
        self,
        *,
        call_id: CallId,
        user: UserId,
        at: int,
        function_arn: str,
        deadline: Deadline,
        action: str = "hangup",
        family: str = "realtime",
    ) -> None:
        """Raises DependencyUnavailable when the schedule cannot be created. A GPT-Live
        session's event says so (`api`), so it is ended the Live way even when the ledger
        cannot be read."""
        name = schedule_name(call_id, action)
        when = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        event = {"action": action, "call_id": call_id, "user": user}
        if family != "realtime":
            event["api"] = family
        if not deadline.allows(ATTEMPT_SECONDS):
            raise DependencyUnavailable("scheduler", "no time left to schedule the hangup", 1)
        target: dict[str, Any] = {
            "Arn": function_arn,
            "RoleArn": self._role_arn,
            "Input": json.dumps(event, separators=(",", ":")),
            "RetryPolicy": RETRY_POLICY,
        }
        if self._dead_letters:
            target["DeadLetterConfig"] = {"Arn": self._dead_letters}
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
                    Description=DESCRIPTIONS[action],
                    Target=target,
                    # botocore's own retries of this request stay one schedule.
                    ClientToken=name[:64],
                )
            except (ClientError, BotoCoreError) as exc:
                raise DependencyUnavailable("scheduler", _reason(exc), retry_after=5) from None

    def delete(self, call_id: CallId, deadline: Deadline, action: str = "hangup") -> bool:
        """The call ended early: its schedule goes. False if it was gone or could not go
        (it would then fire, find the call ended, and settle quietly)."""
        if not deadline.allows(ATTEMPT_SECONDS):
            return False
        name = schedule_name(call_id, action)
        with self._guard.within(deadline):
            try:
                self._client.delete_schedule(Name=name, GroupName=self._group)
            except (ClientError, BotoCoreError):
                return False
        return True


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return f"Scheduler: {exc.response.get('Error', {}).get('Code', 'error')}"
    return f"Scheduler: {type(exc).__name__}"
