"""The spend ledger in DynamoDB: what each user (and everyone) spent today, in micro-dollars.

One charge is one transaction, so it counts once or not at all:
- the event's own item `charge#<call_id>#<event key>` (`resp:<response id>`,
  `tr:<item id>:<content index>`) is put only if it does not exist, so a second charge of
  the same event is refused: watchers that overlap at a hand-over, or a retried write, count
  it once. One small item per event, not a set of keys on one item: a transactional write
  costs 2 write units per started KB of its item, and a set growing through an hour-long
  call would make each charge cost ten times more by the end;
- the call's meter `meter#<call_id>` grows by the amount (the call's total);
- the user's day `spend#user#<user>#<YYYY-MM-DD>` grows by the amount, and so does
  everyone's day `spend#all#<YYYY-MM-DD>` when a global limit is set (UTC days; TTL
  removes them two days later).

Transactions that touch one item at the same time cancel each other (`TransactionConflict`,
which botocore does not retry): two watchers charging one event at a hand-over, two calls of
one user, and, with a global limit, every live call through everyone's day. A conflicted
charge is tried again after a jittered pause, a few times, inside the caller's deadline: the
meter key makes that safe (an event that did get charged is refused by its condition). The
shared item is left out when no global limit is set: nothing reads it then, and every charge
in the service would otherwise contend for it. With a global limit it stays in the
transaction (the kill switch must see every charge); the retries absorb the contention of
moderate traffic, and a charge that still cannot be made is raised, never dropped silently.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .aws import ATTEMPT_SECONDS
from .deadline import Deadline
from .errors import DependencyUnavailable, SpendLimitExceeded
from .ids import CallId, UserId
from .retry_guard import RetryGuard, unavailable

DAY_SECONDS = 86400
TTL_GRACE_SECONDS = 2 * DAY_SECONDS
MICROS_PER_USD = 1_000_000
# A conflicted charge: tried this many times in all, pausing a random time up to the
# doubling step before each retry (50, 100, 200, 400 ms), within the caller's deadline.
CHARGE_ATTEMPTS = 5
CONFLICT_PAUSE_SECONDS = 0.05
MAX_CHARGE_KEY_BYTES = 512
# A GPT-Live session's voice, charged as a running total on its meter (`charge_total`): the
# token function starts it at the 15 s each WebRTC create bills, the watcher brings it up to
# what the session's cumulative usage reports.
VOICE_TOTAL = "voice"
LIVE_UP_FRONT_SECONDS = 15
_AMOUNT = r"(\d+(?:\.\d{1,6})?)"
_LIMIT = re.compile(rf"^\s*(?:(global)\s*:\s*)?usd\s*/\s*day\s*=\s*{_AMOUNT}\s*$")
_FLOOR = re.compile(rf"^\s*floor\s*:\s*usd\s*=\s*{_AMOUNT}\s*$")


def micros_of(amount: str) -> int:
    """`2.5` USD as 2,500,000 micro-dollars, exactly (at most six decimals)."""
    whole, _, fraction = amount.partition(".")
    return int(whole) * MICROS_PER_USD + int(fraction.ljust(6, "0") or 0)


@dataclass(frozen=True)
class SpendLimits:
    """`SPEND_LIMITS`: `usd/day=2.00` per user, `global:usd/day=100` across all users, and
    `floor:usd=0.10`, the least a budget must have left to start a call or mint a secret
    (without it, the token function derives one per profile: one response like the profile's
    dearest)."""

    user_micros: int | None = None
    global_micros: int | None = None
    floor_micros: int | None = None

    @classmethod
    def parse(cls, raw: str, problems: list[str]) -> SpendLimits:
        user: int | None = None
        everyone: int | None = None
        floor: int | None = None
        for part in (p for p in raw.split(",") if p.strip()):
            if found := _FLOOR.match(part):
                if floor is not None:
                    problems.append("SPEND_LIMITS: the floor is given twice")
                floor = micros_of(found.group(1))
                continue
            match = _LIMIT.match(part)
            if not match:
                problems.append(
                    "SPEND_LIMITS: expected entries like 'usd/day=2.00', "
                    f"'global:usd/day=100' or 'floor:usd=0.10', got {part.strip()!r}"
                )
                continue
            micros = micros_of(match.group(2))
            if match.group(1):
                if everyone is not None:
                    problems.append("SPEND_LIMITS: the global limit is given twice")
                everyone = micros
            else:
                if user is not None:
                    problems.append("SPEND_LIMITS: the per-user limit is given twice")
                user = micros
        return cls(user, everyone, floor)

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

    def refusal(self, floor: int = 1) -> SpendLimitExceeded | None:
        """Why a new call or secret may not start now (None when it may): a budget with less
        than `floor` micro-dollars left (at least one) could not pay for one more response."""
        floor = max(floor, 1)
        if self.user_left is not None and self.user_left < floor:
            return SpendLimitExceeded("user", self.resets_after)
        if self.global_left is not None and self.global_left < floor:
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
    day: DaySpend | None  # None: recorded, but the day's totals could not be read after


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
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float], float] = lambda top: random.uniform(0, top),  # noqa: S311
    ) -> None:
        self._table = table
        self.limits = limits
        self._client = client
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._guard = RetryGuard(client, "dynamodb", ATTEMPT_SECONDS)

    def _day(self) -> tuple[str, int, int]:
        now = self._clock()
        day_start = int(now // DAY_SECONDS) * DAY_SECONDS
        name = datetime.fromtimestamp(day_start, UTC).strftime("%Y-%m-%d")
        return name, day_start + DAY_SECONDS + TTL_GRACE_SECONDS, day_start + DAY_SECONDS - int(now)

    def _keys(self, user: UserId, day: str) -> tuple[str, str]:
        return f"spend#user#{user}#{day}", f"spend#all#{day}"

    def charge(
        self,
        *,
        call_id: CallId,
        user: UserId,
        event_key: str,
        micros: int,
        deadline: Deadline | None = None,
    ) -> Charge:
        """Adds `micros` to today's spend, once per (call, event), atomically. Raises
        DependencyUnavailable when it could not be recorded (the caller keeps it to retry);
        once recorded it is reported so, even when the day's totals cannot be read after it
        (`day` is None then: the next charge reads them)."""
        day, ttl, resets = self._day()
        user_key, all_key = self._keys(user, day)
        items = self._transaction(call_id, event_key, micros, ttl, user_key, all_key)
        counted = self._commit(items, deadline)
        return Charge(
            micros if counted else 0, counted, self._after(user_key, all_key, resets, deadline)
        )

    def charge_total(
        self,
        *,
        call_id: CallId,
        user: UserId,
        counter: str,
        total_micros: int,
        deadline: Deadline | None = None,
    ) -> Charge:
        """Brings the call's running total `counter` (e.g. a Live session's voice, whose usage
        arrives as cumulative seconds) up to `total_micros`, charging the difference, exactly
        once whoever reports the same total (a compare-and-set on the call's meter). A total
        at or below what was charged charges nothing."""
        day, ttl, resets = self._day()
        user_key, all_key = self._keys(user, day)
        for _ in range(CHARGE_ATTEMPTS):
            stored = self._stored(call_id, counter, deadline)
            if total_micros <= stored:
                return Charge(0, False, self._after(user_key, all_key, resets, deadline))
            micros = total_micros - stored
            items = self._total_transaction(
                call_id, counter, stored, total_micros, ttl, user_key, all_key
            )
            if self._commit(items, deadline):
                return Charge(micros, True, self._after(user_key, all_key, resets, deadline))
            # Another writer moved the total meanwhile: read it again and charge what is left.
        raise DependencyUnavailable("spend_ledger", "the call's total changed on every attempt", 2)

    def _commit(self, items: list[dict[str, Any]], deadline: Deadline | None) -> bool:
        """One transaction, tried again on a conflict (jittered, doubling, inside the deadline);
        False when its first item's condition refused it (the event was charged already)."""
        attempt = 1
        while True:
            try:
                with self._guard.within(deadline):
                    self._client.transact_write_items(TransactItems=items)
                return True
            except ClientError as exc:
                if _already_charged(exc):
                    return False
                pause = self._jitter(CONFLICT_PAUSE_SECONDS * 2 ** (attempt - 1))
                if (
                    not _conflicted(exc)
                    or attempt >= CHARGE_ATTEMPTS
                    or (deadline is not None and not deadline.allows(pause + ATTEMPT_SECONDS))
                ):
                    raise unavailable(exc, "spend_ledger") from None
            except BotoCoreError as exc:
                raise unavailable(exc, "spend_ledger") from None
            self._sleep(pause)
            attempt += 1

    def _after(
        self, user_key: str, all_key: str, resets: int, deadline: Deadline | None
    ) -> DaySpend | None:
        """The day's totals after a charge; None when they cannot be read: the charge is in,
        and raising now would make the caller keep it and its retry be refused as already
        charged, so the money would never be reported as spent (the next charge reads)."""
        try:
            with self._guard.within(deadline):
                return self._read(user_key, all_key, resets)
        except DependencyUnavailable:
            return None

    def _stored(self, call_id: CallId, counter: str, deadline: Deadline | None) -> int:
        with self._guard.within(deadline):
            try:
                item = self._client.get_item(
                    TableName=self._table,
                    Key={"pk": {"S": f"meter#{call_id}"}},
                    ConsistentRead=True,
                    ProjectionExpression="#c",
                    ExpressionAttributeNames={"#c": counter},
                ).get("Item", {})
            except (ClientError, BotoCoreError) as exc:
                raise unavailable(exc, "spend_ledger") from None
        return _number(item.get(counter))

    def _total_transaction(
        self,
        call_id: CallId,
        counter: str,
        stored: int,
        total: int,
        ttl: int,
        user_key: str,
        all_key: str,
    ) -> list[dict[str, Any]]:
        """The meter's total moves from `stored` to `total` (only if it still holds `stored`),
        and the call's and the days' spend grow by the difference."""
        meter: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": f"meter#{call_id}"}},
            "UpdateExpression": "SET #c = :total, #ttl = :kept ADD micros :n",
            "ConditionExpression": "#c = :stored" if stored else "attribute_not_exists(#c)",
            "ExpressionAttributeNames": {"#c": counter, "#ttl": "ttl"},
            "ExpressionAttributeValues": {
                ":total": {"N": str(total)},
                ":n": {"N": str(total - stored)},
                ":kept": {"N": str(ttl + DAY_SECONDS)},
            }
            | ({":stored": {"N": str(stored)}} if stored else {}),
        }
        return [{"Update": meter}, *self._day_items(total - stored, ttl, user_key, all_key)]

    def _transaction(
        self, call_id: CallId, event_key: str, micros: int, ttl: int, user_key: str, all_key: str
    ) -> list[dict[str, Any]]:
        amount = {":n": {"N": str(micros)}, ":ttl": {"N": str(ttl)}}
        names = {"#ttl": "ttl"}
        kept = str(ttl + DAY_SECONDS)  # the call's items outlive the day the call started in
        items: list[dict[str, Any]] = [
            {
                # An UpdateItem that creates (a Put would need one more IAM action).
                "Update": {
                    "TableName": self._table,
                    "Key": {"pk": {"S": _charge_key(call_id, event_key)}},
                    "UpdateExpression": "SET micros = :n, #ttl = :ttl",
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": amount | {":ttl": {"N": kept}},
                }
            },
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"pk": {"S": f"meter#{call_id}"}},
                    "UpdateExpression": "ADD micros :n SET #ttl = :ttl",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": amount | {":ttl": {"N": kept}},
                }
            },
        ]
        return items + self._day_items(micros, ttl, user_key, all_key)

    def _day_items(self, micros: int, ttl: int, user_key: str, all_key: str) -> list[Any]:
        """The user's day, and everyone's when a global limit is set, grow by `micros`."""
        days = [user_key] + ([all_key] if self.limits.global_micros is not None else [])
        return [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"pk": {"S": key}},
                    "UpdateExpression": "ADD micros :n SET #ttl = :ttl",
                    "ExpressionAttributeNames": {"#ttl": "ttl"},
                    "ExpressionAttributeValues": {
                        ":n": {"N": str(micros)},
                        ":ttl": {"N": str(ttl)},
                    },
                }
            }
            for key in days
        ]

    def today(self, user: UserId, deadline: Deadline | None = None) -> DaySpend:
        day, _, resets = self._day()
        with self._guard.within(deadline):
            return self._read(*self._keys(user, day), resets)

    def call_total(self, call_id: CallId) -> int:
        """Micro-dollars charged to one call so far."""
        try:
            item = self._client.get_item(
                TableName=self._table, Key={"pk": {"S": f"meter#{call_id}"}}, ConsistentRead=True
            ).get("Item", {})
        except (ClientError, BotoCoreError) as exc:
            raise unavailable(exc, "spend_ledger") from None
        return _number(item.get("micros"))

    def today_with(
        self, user: UserId, others: tuple[str, ...], deadline: Deadline | None = None
    ) -> tuple[DaySpend, dict[str, dict[str, Any]]]:
        """Today's spend and, in the same request, the items keyed `others` (the user's
        controls: core.controls), each by its key (absent when there is none)."""
        day, _, resets = self._day()
        with self._guard.within(deadline):
            return self._read_with(*self._keys(user, day), resets, others)

    def _read(self, user_key: str, all_key: str, resets: int) -> DaySpend:
        return self._read_with(user_key, all_key, resets, ())[0]

    def _read_with(
        self, user_key: str, all_key: str, resets: int, others: tuple[str, ...]
    ) -> tuple[DaySpend, dict[str, dict[str, Any]]]:
        keys = [{"pk": {"S": key}} for key in (user_key, all_key, *others)]
        # The days' items hold only `micros`; another item is read whole.
        projection = {} if others else {"ProjectionExpression": "pk, micros"}
        try:
            response = self._client.batch_get_item(
                RequestItems={self._table: {"Keys": keys, "ConsistentRead": True} | projection}
            )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable(exc, "spend_ledger") from None
        items = {
            item["pk"]["S"]: item for item in response.get("Responses", {}).get(self._table, [])
        }
        if response.get("UnprocessedKeys"):  # throttled: unread is not nothing (fail closed)
            raise DependencyUnavailable("spend_ledger", "the day's spend was not read", 2)
        day = DaySpend(
            _number(items.get(user_key, {}).get("micros")),
            _number(items.get(all_key, {}).get("micros")),
            self.limits,
            resets,
        )
        return day, {key: items[key] for key in others if key in items}


def _already_charged(exc: ClientError) -> bool:
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or []
    return bool(reasons) and reasons[0].get("Code") == "ConditionalCheckFailed"


def _conflicted(exc: ClientError) -> bool:
    """Another transaction (or write) held one of the items: worth another try."""
    code = exc.response.get("Error", {}).get("Code")
    if code == "TransactionConflictException":
        return True
    reasons = exc.response.get("CancellationReasons") or []
    return code == "TransactionCanceledException" and any(
        (reason or {}).get("Code") == "TransactionConflict" for reason in reasons
    )


def _charge_key(call_id: CallId, event_key: str) -> str:
    """The event's item. Its ids come from OpenAI's events; one longer than any OpenAI id is
    hashed, so the key stays far below DynamoDB's 2 KB partition key."""
    key = f"charge#{call_id}#{event_key}"
    if len(key.encode()) <= MAX_CHARGE_KEY_BYTES:
        return key
    return f"charge#{hashlib.sha256(key.encode()).hexdigest()}"


def _number(attribute: dict[str, str] | None) -> int:
    return int(attribute["N"]) if attribute and "N" in attribute else 0
