"""Per-user quotas in DynamoDB: every window decided in one conditional UpdateItem.

All windows live in one item per user and longest-window period (windows aligned on the
epoch nest inside each other), one counter attribute per window named by its index:
`c_minute_29384756`. A new window therefore starts at zero with no rollover logic, the
condition covers every window at once, and the response carries every counter, so the
RateLimit headers are exact. The item holds at most as many short-window counters as the
longest window's limit allows successes, and TTL removes it after its period.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .config import QuotaWindow
from .deadline import Deadline
from .errors import DependencyUnavailable, QuotaExceeded, WindowUsage

TTL_GRACE_SECONDS = 3600
# One DynamoDB attempt at worst: connect and read timeouts of deps.DYNAMODB_CONFIG.
ATTEMPT_SECONDS = 3.0


class OutOfTime(BotoCoreError):  # type: ignore[misc]  # botocore ships no types
    """Raised before a DynamoDB retry that would not finish inside the Lambda's deadline."""

    fmt = "no time left in the Lambda's budget for another DynamoDB attempt"


@dataclass(frozen=True)
class Grant:
    """One unit taken: where it was counted, so it can be given back exactly."""

    key: str
    attributes: tuple[str, ...]
    windows: tuple[WindowUsage, ...]


class QuotaStore:
    """Adapter for the per-user quotas in DynamoDB: take one unit atomically, give it back."""

    def __init__(
        self,
        table: str,
        windows: tuple[QuotaWindow, ...],
        client: Any,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self._windows = windows
        self._client = client
        self._clock = clock
        self._deadline: Deadline | None = None
        self._attempts = 0
        # botocore's retries cannot see the Lambda's deadline: this hook runs before every
        # attempt and stops a retry that could not finish in time. (The first attempt is
        # admitted by the service's own budget check.)
        client.meta.events.register_first("before-send.dynamodb", self._check_time_left)

    def _check_time_left(self, **_: Any) -> None:
        self._attempts += 1
        if (
            self._attempts > 1
            and self._deadline is not None
            and not self._deadline.allows(ATTEMPT_SECONDS)
        ):
            raise OutOfTime()

    def consume(self, user: str, deadline: Deadline | None = None) -> Grant:
        """Take one unit from every window, atomically, or raise QuotaExceeded."""
        self._deadline, self._attempts = deadline, 0
        try:
            return self._consume(user)
        finally:
            self._deadline = None

    def _consume(self, user: str) -> Grant:
        now = self._clock()
        longest = self._windows[-1]
        period = int(now // longest.seconds)
        key = f"quota#{user}#{longest.name}#{period}"
        counters = [f"c_{w.name}_{int(now // w.seconds)}" for w in self._windows]
        names = {f"#c{i}": name for i, name in enumerate(counters)} | {"#ttl": "ttl"}
        values: dict[str, Any] = {
            ":one": {"N": "1"},
            ":ttl": {"N": str((period + 1) * longest.seconds + TTL_GRACE_SECONDS)},
        }
        conditions = []
        for i, window in enumerate(self._windows):
            values[f":l{i}"] = {"N": str(window.limit)}
            conditions.append(f"(attribute_not_exists(#c{i}) OR #c{i} < :l{i})")
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression="SET #ttl = :ttl ADD "
                + ", ".join(f"#c{i} :one" for i in range(len(counters))),
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise self._exceeded(exc.response.get("Item", {}), counters, now) from None
            raise _unavailable(exc) from None
        except BotoCoreError as exc:
            raise _unavailable(exc) from None
        counts = [_number(response.get("Attributes", {}).get(name)) for name in counters]
        return Grant(key, tuple(counters), self._usage(counts, now))

    def give_back(self, grant: Grant, deadline: Deadline | None = None) -> bool:
        """Return the unit of a mint that failed for reasons not the caller's. Best effort."""
        self._deadline, self._attempts = deadline, 0
        try:
            return self._give_back(grant)
        finally:
            self._deadline = None

    def _give_back(self, grant: Grant) -> bool:
        names = {f"#c{i}": name for i, name in enumerate(grant.attributes)}
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": grant.key}},
                UpdateExpression="ADD " + ", ".join(f"#c{i} :minus" for i in range(len(names))),
                ConditionExpression=" AND ".join(f"#c{i} > :zero" for i in range(len(names))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":minus": {"N": "-1"}, ":zero": {"N": "0"}},
            )
        except (ClientError, BotoCoreError):
            return False
        return True

    def _usage(self, counts: list[int], now: float) -> tuple[WindowUsage, ...]:
        return tuple(
            WindowUsage(
                name=w.name,
                limit=w.limit,
                seconds=w.seconds,
                remaining=max(w.limit - count, 0),
                reset_after=_reset_after(w, now),
            )
            for w, count in zip(self._windows, counts, strict=True)
        )

    def _exceeded(self, item: dict[str, Any], counters: list[str], now: float) -> QuotaExceeded:
        counts = [_number(item.get(name)) for name in counters]
        usage = self._usage(counts, now)
        spent = [u for u in usage if u.remaining == 0] or list(usage)
        # The caller may try again when every exhausted window has reset.
        worst = max(spent, key=lambda u: u.reset_after)
        return QuotaExceeded(retry_after=worst.reset_after, windows=usage, violated=worst.name)


def _reset_after(window: QuotaWindow, now: float) -> int:
    end = (math.floor(now / window.seconds) + 1) * window.seconds
    return max(math.ceil(end - now), 1)


def _number(attribute: dict[str, str] | None) -> int:
    return int(attribute["N"]) if attribute and "N" in attribute else 0


def _unavailable(exc: Exception) -> DependencyUnavailable:
    code = (
        exc.response.get("Error", {}).get("Code", "error")
        if isinstance(exc, ClientError)
        else type(exc).__name__
    )
    # Fail closed: every allowed request costs money, so an unknown count means no.
    return DependencyUnavailable("quota_store", f"DynamoDB: {code}", retry_after=2)
