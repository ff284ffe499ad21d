"""Per-user controls an operator sets (`make ops`): a block, and overrides of a user's limits
that expire. Both functions read them; only the operator's command line writes them.

One item per user (`pk = control#<user>`) in the quota table:
- `blocked` (epoch seconds it was set) and `blocked_why` (the operator's words): while the
  item holds them the user's requests are refused (403 `user-blocked`) and their live calls
  are ended by their watchers (end reason `blocked`);
- `end_calls`: the ids of calls the operator asked to end (`make ops end`): each one's
  watcher ends it (end reason `operator`) and the command line then takes the id out;
- `o_<limit>` and `o_<limit>_until`: an override of one limit, in the syntax of its variable
  (`quotas`: "50/minute,500/day"; `call_limits`: "concurrent=3,minutes/day=240";
  `spend_limits`: "usd/day=20.00"), in force until that epoch second. An expired override is
  ignored wherever it is read; `make ops clear` removes it.

The token function reads the item in the same BatchGetItem as the day's spend (no request of
its own when a spend budget is set), the watcher every CONTROL_POLL_SECONDS of a live call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .aws import ATTEMPT_SECONDS
from .deadline import Deadline
from .ids import UserId
from .retry_guard import RetryGuard, unavailable

OVERRIDABLE = ("quotas", "call_limits", "spend_limits")
PREFIX = "control#"


def control_key(user: str) -> dict[str, Any]:
    return {"pk": {"S": f"{PREFIX}{user}"}}


@dataclass(frozen=True)
class Override:
    value: str  # in the syntax of the limit's variable
    until: int  # epoch seconds


@dataclass(frozen=True)
class Controls:
    """What the operator has set for one user (nothing, for most)."""

    blocked_at: int | None = None
    blocked_why: str = ""
    overrides: Mapping[str, Override] = field(default_factory=dict)
    end_calls: frozenset[str] = frozenset()  # calls the operator asked to end

    @property
    def blocked(self) -> bool:
        return self.blocked_at is not None

    def override(self, limit: str, now: float) -> str | None:
        """The override of `limit` in force at `now`, or None."""
        found = self.overrides.get(limit)
        return found.value if found is not None and found.until > now else None


NONE = Controls()


def parse_controls(item: Mapping[str, Any] | None) -> Controls:
    """The controls an item holds (an absent item holds none). A value of the wrong type is
    skipped: an item only the operator's command line writes cannot refuse every request."""
    if not item:
        return NONE
    blocked = item.get("blocked", {}).get("N")
    overrides = {}
    for limit in OVERRIDABLE:
        value = item.get(f"o_{limit}", {}).get("S")
        until = item.get(f"o_{limit}_until", {}).get("N")
        if value and until and until.lstrip("-").isdigit():
            overrides[limit] = Override(value, int(until))
    return Controls(
        blocked_at=int(blocked) if blocked and blocked.isdigit() else None,
        blocked_why=item.get("blocked_why", {}).get("S", ""),
        overrides=overrides,
        end_calls=frozenset(item.get("end_calls", {}).get("SS", [])),
    )


class ControlReader:
    """Reads one user's controls (the watcher's poll; the token function without a spend
    budget, where there is no spend read to ride on)."""

    def __init__(self, table: str, client: Any) -> None:
        self._table = table
        self._client = client
        # botocore's retries cannot see the deadline: a slow table must not hold the
        # watcher's loop (its charges, its deadline end) or an API worker thread past it.
        self._guard = RetryGuard(client, "dynamodb", ATTEMPT_SECONDS)

    def read(self, user: UserId, deadline: Deadline | None = None) -> Controls:
        try:
            with self._guard.within(deadline):
                item = self._client.get_item(
                    TableName=self._table, Key=control_key(user), ConsistentRead=True
                ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise unavailable(exc, "controls") from None
        return parse_controls(item)


class ControlWriter:
    """The operator's writes (ops/): each one UpdateItem on the control item alone, so no
    control can leave another ledger inconsistent."""

    def __init__(self, table: str, client: Any, clock: Any = time.time) -> None:
        self._table = table
        self._client = client
        self._clock = clock

    def block(self, user: str, why: str) -> None:
        self._update(
            user,
            "SET blocked = :at, blocked_why = :why",
            {":at": {"N": str(int(self._clock()))}, ":why": {"S": why[:200]}},
        )

    def unblock(self, user: str) -> None:
        self._update(user, "REMOVE blocked, blocked_why", None)

    def set_override(self, user: str, limit: str, value: str, until: int) -> None:
        if limit not in OVERRIDABLE:
            raise ValueError(f"no such limit {limit!r}: one of {', '.join(OVERRIDABLE)}")
        self._update(
            user,
            "SET #v = :v, #u = :u",
            {":v": {"S": value}, ":u": {"N": str(until)}},
            {"#v": f"o_{limit}", "#u": f"o_{limit}_until"},
        )

    def clear_override(self, user: str, limit: str) -> None:
        if limit not in OVERRIDABLE:
            raise ValueError(f"no such limit {limit!r}: one of {', '.join(OVERRIDABLE)}")
        self._update(user, "REMOVE #v, #u", None, {"#v": f"o_{limit}", "#u": f"o_{limit}_until"})

    def end_call(self, user: str, call_id: str) -> None:
        """Ask the call's watcher to end it (it reads this item every CONTROL_POLL_SECONDS)."""
        self._update(user, "ADD end_calls :id", {":id": {"SS": [call_id]}})

    def forget_call(self, user: str, call_id: str) -> None:
        self._update(user, "DELETE end_calls :id", {":id": {"SS": [call_id]}})

    def _update(
        self,
        user: str,
        expression: str,
        values: dict[str, Any] | None,
        names: dict[str, str] | None = None,
    ) -> None:
        params: dict[str, Any] = {
            "TableName": self._table,
            "Key": control_key(user),
            "UpdateExpression": expression,
        }
        if values:
            params["ExpressionAttributeValues"] = values
        if names:
            params["ExpressionAttributeNames"] = names
        self._client.update_item(**params)
