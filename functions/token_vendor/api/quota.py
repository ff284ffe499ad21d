"""Per-user quotas in DynamoDB: every window decided in one conditional UpdateItem.

All windows live in one item per user and longest-window period (windows aligned on the
epoch nest inside each other), one counter attribute per window named by its index:
`c_minute_29384756`. A new window therefore starts at zero with no rollover logic, the
condition covers every window at once, and the response carries every counter, so the
RateLimit headers are exact. The item holds at most as many short-window counters as the
longest window's limit allows successes, and TTL removes it after its period.

An optional global quota (GLOBAL_QUOTAS) caps every user together: one more item, counted
the same way, after the user's own. Each item's update is atomic (no race can overshoot a
limit); when the global item refuses, the user's unit is given back, so a refusal costs
nothing. With self sign-up, per-user quotas alone are no limit on spend: this is.

The routes that spend no money but still cost a Lambda invocation and DynamoDB reads (listing
calls, hanging up) have per-user windows of their own (`RouteQuotas`, CALL_ROUTE_QUOTAS):
the same counting under another key, one per route, so a client polling the list never uses
up its own hangup, and nothing they count is a mint.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..core.aws import ATTEMPT_SECONDS
from ..core.deadline import Deadline
from ..core.errors import DependencyUnavailable, GlobalQuotaExceeded, QuotaExceeded, WindowUsage
from ..core.ids import UserId
from ..core.retry_guard import RetryGuard, unavailable
from .windows import QuotaWindow

TTL_GRACE_SECONDS = 3600


GLOBAL_USER = "global"  # user hashes are hex: this key can never be a user's
# The routes with windows of their own (RouteQuotas); the mint's items keep their old key.
ROUTES = ("list", "hangup")


@dataclass(frozen=True)
class Counted:
    """One item's counters that took a unit."""

    key: str
    attributes: tuple[str, ...]


@dataclass(frozen=True)
class Grant:
    """One unit taken: where it was counted, so it can be given back exactly. `windows` are
    the caller's own (the RateLimit headers)."""

    counted: tuple[Counted, ...]
    windows: tuple[WindowUsage, ...]


class QuotaStore:
    """Adapter for the per-user quotas in DynamoDB: take one unit atomically, give it back."""

    def __init__(
        self,
        table: str,
        windows: tuple[QuotaWindow, ...],
        client: Any,
        *,
        global_windows: tuple[QuotaWindow, ...] = (),
        clock: Callable[[], float] = time.time,
        scope: str = "mint",
    ) -> None:
        self._scope = scope
        self._prefix = "quota" if scope == "mint" else f"limit#{scope}"
        self._table = table
        self._windows = windows
        self._global_windows = global_windows
        self._client = client
        self._clock = clock
        self._guard = RetryGuard(client, "dynamodb", ATTEMPT_SECONDS)

    def consume(
        self,
        user: UserId,
        deadline: Deadline | None = None,
        windows: tuple[QuotaWindow, ...] | None = None,
    ) -> Grant:
        """Take one unit from every window (`windows`: a user's override of them),
        atomically, or raise QuotaExceeded."""
        with self._guard.within(deadline):
            return self._consume(user, windows or self._windows)

    def _consume(self, user: str, windows: tuple[QuotaWindow, ...]) -> Grant:
        now = self._clock()
        own, usage = self._count(user, windows, now)
        if not self._global_windows:
            return Grant((own,), usage)
        try:
            everyone, _ = self._count(GLOBAL_USER, self._global_windows, now)
        except QuotaExceeded as exc:
            self._give_back(Grant((own,), usage))
            raise GlobalQuotaExceeded(exc.retry_after, exc.violated) from None
        except DependencyUnavailable:
            self._give_back(Grant((own,), usage))
            raise
        return Grant((own, everyone), usage)

    def _count(
        self, user: str, windows: tuple[QuotaWindow, ...], now: float
    ) -> tuple[Counted, tuple[WindowUsage, ...]]:
        longest = windows[-1]
        period = int(now // longest.seconds)
        key = f"{self._prefix}#{user}#{longest.name}#{period}"
        counters = [f"c_{w.name}_{int(now // w.seconds)}" for w in windows]
        names = {f"#c{i}": name for i, name in enumerate(counters)} | {"#ttl": "ttl"}
        values: dict[str, Any] = {
            ":one": {"N": "1"},
            ":ttl": {"N": str((period + 1) * longest.seconds + TTL_GRACE_SECONDS)},
        }
        conditions = []
        for i, window in enumerate(windows):
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
                item = exc.response.get("Item", {})
                raise _exceeded(windows, item, counters, now, self._scope) from None
            raise unavailable(exc) from None
        except BotoCoreError as exc:
            raise unavailable(exc) from None
        counts = [_number(response.get("Attributes", {}).get(name)) for name in counters]
        return Counted(key, tuple(counters)), _usage(windows, counts, now)

    def give_back(self, grant: Grant, deadline: Deadline | None = None) -> bool:
        """Return the unit of a mint that failed for reasons not the caller's. Best effort."""
        with self._guard.within(deadline):
            return self._give_back(grant)

    def _give_back(self, grant: Grant) -> bool:
        return all([self._return_unit(counted) for counted in grant.counted])

    def _return_unit(self, counted: Counted) -> bool:
        names = {f"#c{i}": name for i, name in enumerate(counted.attributes)}
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": counted.key}},
                UpdateExpression="ADD " + ", ".join(f"#c{i} :minus" for i in range(len(names))),
                ConditionExpression=" AND ".join(f"#c{i} > :zero" for i in range(len(names))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":minus": {"N": "-1"}, ":zero": {"N": "0"}},
                ReturnValues="UPDATED_NEW",
            )
        except (ClientError, BotoCoreError):
            return False
        # A counter back at zero is removed, not kept: a user whose mints keep failing in a
        # `second` window would otherwise add one item attribute per second, toward
        # DynamoDB's 400 KB item limit. Conditional: a concurrent mint may have counted since.
        attributes = response.get("Attributes", {})
        for name in [n for n in counted.attributes if _number(attributes.get(n)) == 0]:
            # Counted again meanwhile, or DynamoDB failed: a zero left behind is harmless.
            with contextlib.suppress(ClientError, BotoCoreError):
                self._client.update_item(
                    TableName=self._table,
                    Key={"pk": {"S": counted.key}},
                    UpdateExpression="REMOVE #c",
                    ConditionExpression="#c = :zero",
                    ExpressionAttributeNames={"#c": name},
                    ExpressionAttributeValues={":zero": {"N": "0"}},
                )
        return True


class RouteQuotas:
    """Per-user windows for listing calls and for hanging up, each route counted apart.

    Neither route spends money, but each costs an invocation and DynamoDB reads, and a hangup
    an OpenAI request: without a limit one signed-in client could run them in a loop. Nothing
    is given back (nothing was spent that a failure should return)."""

    def __init__(
        self,
        table: str,
        windows: tuple[QuotaWindow, ...],
        client: Any,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stores = {
            route: QuotaStore(table, windows, client, clock=clock, scope=route) for route in ROUTES
        }

    def consume(self, user: UserId, route: str, deadline: Deadline | None = None) -> Grant:
        """Take one unit of `route`'s windows for `user`, or raise QuotaExceeded."""
        return self._stores[route].consume(user, deadline)


def _usage(
    windows: tuple[QuotaWindow, ...], counts: list[int], now: float
) -> tuple[WindowUsage, ...]:
    return tuple(
        WindowUsage(
            name=w.name,
            limit=w.limit,
            seconds=w.seconds,
            remaining=max(w.limit - count, 0),
            reset_after=_reset_after(w, now),
        )
        for w, count in zip(windows, counts, strict=True)
    )


def _exceeded(
    windows: tuple[QuotaWindow, ...],
    item: dict[str, Any],
    counters: list[str],
    now: float,
    scope: str,
) -> QuotaExceeded:
    counts = [_number(item.get(name)) for name in counters]
    usage = _usage(windows, counts, now)
    spent = [u for u in usage if u.remaining == 0] or list(usage)
    # The caller may try again when every exhausted window has reset.
    worst = max(spent, key=lambda u: u.reset_after)
    return QuotaExceeded(
        retry_after=worst.reset_after, windows=usage, violated=worst.name, scope=scope
    )


def _reset_after(window: QuotaWindow, now: float) -> int:
    end = (math.floor(now / window.seconds) + 1) * window.seconds
    return max(math.ceil(end - now), 1)


def _number(attribute: dict[str, str] | None) -> int:
    return int(attribute["N"]) if attribute and "N" in attribute else 0
