"""The spend ledger in DynamoDB: what each user (and everyone) spent today, in micro-dollars.

One charge is one transaction of three updates, so it counts once or not at all:
- the call's meter item `meter#<call_id>` remembers the keys of the events already charged
  (`resp:<response id>`, `tr:<item id>:<content index>`) and refuses a second charge of
  the same event: watchers that overlap at a hand-over, or a retried write, count it once;
- the user's day `spend#user#<user>#<YYYY-MM-DD>` and everyone's day
  `spend#all#<YYYY-MM-DD>` grow by the amount (UTC days; TTL removes them two days later).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .deadline import Deadline
from .errors import SpendLimitExceeded
from .retry_guard import RetryGuard, unavailable

DAY_SECONDS = 86400
TTL_GRACE_SECONDS = 2 * DAY_SECONDS
MICROS_PER_USD = 1_000_000
_LIMIT = re.compile(r"^\s*(?:(global)\s*:\s*)?usd\s*/\s*day\s*=\s*(\d+(?:\.\d{1,6})?)\s*$")


@dataclass(frozen=True)
class SpendLimits:
    """`SPEND_LIMITS`: `usd/day=2.00` per user, `global:usd/day=100` across all users."""

    user_micros: int | None = None
    global_micros: int | None = None

    @classmethod
    def parse(cls, raw: str, problems: list[str]) -> SpendLimits:
        user: int | None = None
        everyone: int | None = None
        for part in (p for p in raw.split(",") if p.strip()):
            match = _LIMIT.match(part)
            if not match:
                problems.append(
                    "SPEND_LIMITS: expected entries like 'usd/day=2.00' or "
                    f"'global:usd/day=100', got {part.strip()!r}"
                )
                continue
            whole, _, fraction = match.group(2).partition(".")
            micros = int(whole) * MICROS_PER_USD + int(fraction.ljust(6, "0") or 0)
            if match.group(1):
                if everyone is not None:
                    problems.append("SPEND_LIMITS: the global limit is given twice")
                everyone = micros
            else:
                if user is not None:
                    problems.append("SPEND_LIMITS: the per-user limit is given twice")
                user = micros
        return cls(user, everyone)

    @property
    def any(self) -> bool:
        return self.user_micros is not None or self.global_micros is not None


@dataclass(frozen=True)
class DaySpend:
    """Micro-dollars spent today by one user and by everyone, against the limits."""

    user_micros: int
    global_micros: int
    limits: SpendLimits
    resets_after: int  # seconds to the next UTC midnight

    @property
    def user_left(self) -> int | None:
        if self.limits.user_micros is None:
            return None
        return max(self.limits.user_micros - self.user_micros, 0)

    @property
    def global_left(self) -> int | None:
        if self.limits.global_micros is None:
            return None
        return max(self.limits.global_micros - self.global_micros, 0)

    @property
    def left(self) -> int | None:
        """What this user may still spend today: the smaller of the two budgets."""
        lefts = [x for x in (self.user_left, self.global_left) if x is not None]
        return min(lefts) if lefts else None

    @property
    def exhausted(self) -> bool:
        return self.left == 0

    def refusal(self) -> SpendLimitExceeded | None:
        """Why a new call may not start now (None when it may)."""
        if self.user_left == 0:
            return SpendLimitExceeded("user", self.resets_after)
        if self.global_left == 0:
            return SpendLimitExceeded("global", self.resets_after)
        return None

    def would_cross(self, next_micros: int) -> bool:
        """True when one more charge of `next_micros` would reach a limit."""
        left = self.left
        return left is not None and left <= next_micros


@dataclass(frozen=True)
class Charge:
    micros: int
    counted: bool  # False: this event had been charged before, nothing was added
    day: DaySpend


def usd(micros: int) -> str:
    return f"{micros / MICROS_PER_USD:.6f}"


class SpendLedger:
    def __init__(
        self,
        table: str,
        limits: SpendLimits,
        client: Any,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self.limits = limits
        self._client = client
        self._clock = clock
        # One DynamoDB attempt at worst: connect and read timeouts of deps.DYNAMODB_CONFIG.
        self._guard = RetryGuard(client, "dynamodb", 3.0)

    def _day(self) -> tuple[str, int, int]:
        now = self._clock()
        day_start = int(now // DAY_SECONDS) * DAY_SECONDS
        name = datetime.fromtimestamp(day_start, UTC).strftime("%Y-%m-%d")
        return name, day_start + DAY_SECONDS + TTL_GRACE_SECONDS, day_start + DAY_SECONDS - int(now)

    def _keys(self, user: str, day: str) -> tuple[str, str]:
        return f"spend#user#{user}#{day}", f"spend#all#{day}"

    def charge(self, call_id: str, user: str, event_key: str, micros: int) -> Charge:
        """Adds `micros` to today's spend, once per (call, event), atomically."""
        day, ttl, resets = self._day()
        user_key, all_key = self._keys(user, day)
        amount = {":n": {"N": str(micros)}, ":ttl": {"N": str(ttl)}}
        add = "ADD micros :n SET #ttl = :ttl"
        names = {"#ttl": "ttl"}
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": {"pk": {"S": f"meter#{call_id}"}},
                            "UpdateExpression": "ADD charged :key, micros :n SET #ttl = :ttl",
                            "ConditionExpression": "NOT contains(charged, :one)",
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": amount
                            | {
                                ":key": {"SS": [event_key]},
                                ":one": {"S": event_key},
                                # The meter outlives the day the call started in.
                                ":ttl": {"N": str(ttl + DAY_SECONDS)},
                            },
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": {"pk": {"S": user_key}},
                            "UpdateExpression": add,
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": amount,
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": {"pk": {"S": all_key}},
                            "UpdateExpression": add,
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": amount,
                        }
                    },
                ]
            )
            counted = True
        except ClientError as exc:
            if not _already_charged(exc):
                raise unavailable(exc, "spend_ledger") from None
            counted = False
        except BotoCoreError as exc:
            raise unavailable(exc, "spend_ledger") from None
        return Charge(micros if counted else 0, counted, self._read(user_key, all_key, resets))

    def today(self, user: str, deadline: Deadline | None = None) -> DaySpend:
        day, _, resets = self._day()
        with self._guard.within(deadline):
            return self._read(*self._keys(user, day), resets)

    def call_total(self, call_id: str) -> int:
        """Micro-dollars charged to one call so far."""
        try:
            item = self._client.get_item(
                TableName=self._table, Key={"pk": {"S": f"meter#{call_id}"}}, ConsistentRead=True
            ).get("Item", {})
        except (ClientError, BotoCoreError) as exc:
            raise unavailable(exc, "spend_ledger") from None
        return _number(item.get("micros"))

    def _read(self, user_key: str, all_key: str, resets: int) -> DaySpend:
        try:
            response = self._client.batch_get_item(
                RequestItems={
                    self._table: {
                        "Keys": [{"pk": {"S": user_key}}, {"pk": {"S": all_key}}],
                        "ConsistentRead": True,
                        "ProjectionExpression": "pk, micros",
                    }
                }
            )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable(exc, "spend_ledger") from None
        found = {
            item["pk"]["S"]: _number(item.get("micros"))
            for item in response.get("Responses", {}).get(self._table, [])
        }
        return DaySpend(found.get(user_key, 0), found.get(all_key, 0), self.limits, resets)


def _already_charged(exc: ClientError) -> bool:
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or []
    return bool(reasons) and reasons[0].get("Code") == "ConditionalCheckFailed"


def _number(attribute: dict[str, str] | None) -> int:
    return int(attribute["N"]) if attribute and "N" in attribute else 0
