"""Who watches a call: a lease in DynamoDB, so at most one watcher holds a call at a time.

Item `watch#<call_id>`: `holder` (the watcher's token), `expires` (epoch seconds; a holder
that stops renewing loses the lease then), `attached` (the holder has its sideband open),
`handovers`, and `ended` once the call is over (no watcher may take it again). Every change is
one conditional UpdateItem, so duplicate start events race for it and exactly one wins.

A hand-over writes the successor's token as the holder before the successor runs: the
successor takes the lease only if it was named, swapping the named token for a fresh one of
its own in the same write, so a duplicated start event (async invokes are at-least-once)
finds the name gone and steps back. The predecessor keeps metering until the new holder
reports `attached` (the spend ledger counts each event once, so the overlap costs nothing and
leaves no gap).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .ids import CallId
from .retry_guard import unavailable

KEEP_SECONDS = 2 * 86400  # the item's TTL after its last change


@dataclass(frozen=True)
class LeaseState:
    holder: str | None
    expires: float
    attached: bool
    ended: bool
    handovers: int


class LeaseStore:
    def __init__(self, table: str, client: Any, *, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._client = client
        self._clock = clock

    def acquire(self, call_id: CallId, me: str, seconds: float) -> bool:
        """A first watcher: takes a lease nobody holds (or whose holder stopped renewing)."""
        return self._update(
            call_id,
            "SET holder = :me, expires = :until, attached = :no, #ttl = :ttl",
            "(attribute_not_exists(holder) OR expires < :now) AND attribute_not_exists(ended)",
            {":me": me, ":until": self._clock() + seconds, ":no": False},
        )

    def take_over(self, call_id: CallId, named: str, me: str, seconds: float) -> bool:
        """A successor: takes the lease its predecessor `named` it for, as `me` (a fresh
        token): only one of two starts carrying the same name can win."""
        return self._update(
            call_id,
            "SET holder = :me, expires = :until, attached = :no, #ttl = :ttl",
            "holder = :named AND attribute_not_exists(ended)",
            {":named": named, ":me": me, ":until": self._clock() + seconds, ":no": False},
        )

    def renew(self, call_id: CallId, me: str, seconds: float) -> bool:
        """Keeps the lease; only a holder with its sideband open renews, so it also says
        `attached` again (in case marking it after the attach failed)."""
        return self._update(
            call_id,
            "SET expires = :until, attached = :yes, #ttl = :ttl",
            "holder = :me",
            {":me": me, ":until": self._clock() + seconds, ":yes": True},
        )

    def mark_attached(self, call_id: CallId, me: str) -> bool:
        return self._update(
            call_id, "SET attached = :yes, #ttl = :ttl", "holder = :me", {":me": me, ":yes": True}
        )

    def pass_to(self, call_id: CallId, me: str, successor: str, seconds: float) -> bool:
        """Names the successor as holder; it has `seconds` to take the lease."""
        return self._update(
            call_id,
            "SET holder = :next, expires = :until, attached = :no, #ttl = :ttl ADD handovers :one",
            "holder = :me AND attribute_not_exists(ended)",
            {
                ":me": me,
                ":next": successor,
                ":until": self._clock() + seconds,
                ":no": False,
                ":one": 1,
            },
        )

    def end(self, call_id: CallId) -> None:
        """The call is over: nobody watches it again, whoever held it."""
        self._update(call_id, "SET ended = :yes, expires = :zero, #ttl = :ttl", None, {
            ":yes": True, ":zero": 0,
        })  # fmt: skip

    def release(self, call_id: CallId, me: str) -> bool:
        """Lets go without ending the call (a watcher that could not attach)."""
        return self._update(
            call_id, "SET expires = :zero, #ttl = :ttl", "holder = :me", {":me": me, ":zero": 0}
        )

    def state(self, call_id: CallId) -> LeaseState:
        try:
            item = self._client.get_item(
                TableName=self._table, Key={"pk": {"S": _key(call_id)}}, ConsistentRead=True
            ).get("Item", {})
        except (ClientError, BotoCoreError) as exc:
            raise unavailable(exc, "lease") from None
        return LeaseState(
            holder=item.get("holder", {}).get("S"),
            expires=float(item.get("expires", {}).get("N", "0")),
            attached=item.get("attached", {}).get("BOOL", False),
            ended=item.get("ended", {}).get("BOOL", False),
            handovers=int(item.get("handovers", {}).get("N", "0")),
        )

    def _update(
        self, call_id: CallId, expression: str, condition: str | None, values: dict[str, Any]
    ) -> bool:
        now = self._clock()
        attributes = {name: _attribute(value) for name, value in values.items()}
        attributes[":ttl"] = {"N": str(int(now) + KEEP_SECONDS)}
        if condition and ":now" in condition:
            attributes[":now"] = {"N": repr(now)}
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": _key(call_id)}},
            "UpdateExpression": expression,
            "ExpressionAttributeNames": {"#ttl": "ttl"},
            "ExpressionAttributeValues": attributes,
        }
        if condition:
            request["ConditionExpression"] = condition
        try:
            self._client.update_item(**request)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise unavailable(exc, "lease") from None
        except BotoCoreError as exc:
            raise unavailable(exc, "lease") from None
        return True


def _key(call_id: CallId) -> str:
    return f"watch#{call_id}"


def _attribute(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": repr(value)}
    return {"S": str(value)}
