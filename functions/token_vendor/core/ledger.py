"""The call ledger: at most N live calls per user and a daily budget of call seconds, decided
in one conditional write before OpenAI is called.

One item per user (`pk = calls#<user>`) in the quota table holds everything the decision
needs, so a single conditional UpdateItem decides it atomically:

- N fixed slots, each a few attributes: `s<i>_ref` (this reservation), `s<i>_end` (when
  the server will have ended the call, Unix seconds), `s<i>_start`, `s<i>_day` (the UTC day
  it was reserved on), `s<i>_call` (OpenAI's call id, once placed), `s<i>_done` (ended),
  `s<i>_why` (why it ended, once known: an `EndReason`; the first cause recorded stands),
  `s<i>_api` (`live` for a GPT-Live session; absent for a Realtime call).
  A slot is free when it has no `_end` or its `_end` has passed: a call past its end time
  frees its slot whether or not anything cleaned up after it; no limit depends on TTL.
- one counter per UTC day, `m_<day>`: the seconds reserved that day. Admission adds the
  call's reservation; settling subtracts the part the call did not use. Beside it `n_<day>`,
  the calls admitted that day (a call never placed is taken back): the operator's usage
  report (ops/) reads it; no limit does.

Admission names one slot: "that slot is free AND the day's counter leaves room". When the
slot was taken, the write's failure returns the item as it was (one round trip) and the
next attempt names a slot that image shows free; every attempt is itself atomic, so N holds
exactly under any contention. Settling is conditional on the reservation still holding its
slot and not being ended, so duplicate hangups settle exactly once.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .aws import ATTEMPT_SECONDS
from .deadline import Deadline
from .ending import CallRecord, CallsView, EndReason
from .errors import CallLimitExceeded, DependencyUnavailable
from .ids import CallId, UserId
from .retry_guard import RetryGuard, unavailable
from .settings import MAX_CONCURRENT_CALLS, CallLimits

DAY = 86400
OLD_DAYS_DROPPED = 7  # past days' counters removed on each admission (they decide nothing)
SLOT_FIELDS = ("ref", "end", "start", "day", "call", "done", "why", "api")


@dataclass(frozen=True)
class Reservation:
    user: UserId
    slot: int
    ref: str
    started_at: int
    ends_at: int
    seconds: int
    day: int
    minutes_left: int
    family: str = "realtime"
    # The slot's attributes as they were before this reservation took it (a call that had
    # ended): a release puts them back, so a refused attempt erases no call's record.
    displaced: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class CallLedger:
    def __init__(
        self,
        table: str,
        limits: CallLimits,
        client: Any,
        *,
        clock: Callable[[], float] = time.time,
        new_ref: Callable[[], str] = lambda: secrets.token_hex(8),
        guard: RetryGuard | None = None,
    ) -> None:
        self._table = table
        self._limits = limits
        self._client = client
        self._clock = clock
        self._new_ref = new_ref
        # One guard per client: another ledger over the same client (a user's own limits)
        # shares it rather than registering its hook again.
        self._guard = guard or RetryGuard(client, "dynamodb", ATTEMPT_SECONDS)

    def now(self) -> float:
        return self._clock()

    # --- admission ------------------------------------------------------------------------

    def admit(
        self,
        user: UserId,
        ends_at: int,
        deadline: Deadline,
        family: str = "realtime",
        limits: CallLimits | None = None,
    ) -> Reservation:
        """Reserve a slot and `ends_at - now` seconds of today's budget, or CallLimitExceeded.
        `limits`: the user's own (their plan's, or an operator's override), else the ledger's."""
        if limits is not None and limits != self._limits:
            return CallLedger(
                self._table, limits, self._client, clock=self._clock, new_ref=self._new_ref,
                guard=self._guard,
            ).admit(user, ends_at, deadline, family)  # fmt: skip
        now = int(self._clock())
        seconds = max(ends_at - now, 1)
        day = now // DAY
        budget = self._limits.seconds_per_day
        if seconds > budget:
            raise self._over_budget(0, seconds, now)
        slot, ref = 0, self._new_ref()
        with self._guard.within(deadline):
            for _ in range(self._limits.concurrent + 2):
                if not deadline.allows(ATTEMPT_SECONDS):
                    raise DependencyUnavailable("quota_store", "no time left to admit the call", 1)
                admitted, image = self._try_admit(
                    user, slot, ref, now, ends_at, seconds, day, family
                )
                if admitted:
                    used = _number(image.get(f"m_{day}")) + seconds
                    displaced = {k: v for k, v in image.items() if k.startswith(f"s{slot}_")}
                    return Reservation(
                        user, slot, ref, now, ends_at, seconds, day, _minutes(budget - used),
                        family, displaced,
                    )  # fmt: skip
                slot = self._next_slot(image, now, seconds, day)
        raise DependencyUnavailable("quota_store", "the calls item changed on every attempt", 1)

    def _try_admit(
        self,
        user: UserId,
        slot: int,
        ref: str,
        now: int,
        ends_at: int,
        seconds: int,
        day: int,
        family: str,
    ) -> tuple[bool, dict[str, Any]]:
        """One conditional write naming `slot`: whether it was admitted, and the item as it was
        before the write (either way: what the reservation displaced, or why it failed)."""
        s = _slot_names(slot)
        # Past days' counters go: the seconds (`m_`) and the calls admitted (`n_`).
        old = {
            f"#old{p}{i}": f"{p}_{day - i}"
            for p in ("m", "n")
            for i in range(1, OLD_DAYS_DROPPED + 1)
        }
        # The slots past this user's limit must hold no live call: a limit lowered while calls
        # ran there (a plan downgraded, an override expired) admits nothing until they end.
        beyond = {
            f"#beyond{i}": f"s{i}_end" for i in range(self._limits.concurrent, MAX_CONCURRENT_CALLS)
        }
        try:
            written = self._client.update_item(
                TableName=self._table,
                Key=_key(user),
                UpdateExpression=(
                    "SET #ref = :ref, #end = :end, #start = :start, #day = :day, #ttl = :ttl,"
                    " #api = :api REMOVE #call, #done, #why, "
                    + ", ".join(old)
                    + " ADD #used :seconds, #count :one"
                ),
                ConditionExpression=" AND ".join(
                    [
                        "(attribute_not_exists(#end) OR #end <= :now)",
                        "(attribute_not_exists(#used) OR #used <= :room)",
                    ]
                    + [f"(attribute_not_exists({n}) OR {n} <= :now)" for n in beyond]
                ),
                ExpressionAttributeNames=s
                | old
                | beyond
                | {"#used": f"m_{day}", "#count": f"n_{day}", "#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":ref": {"S": ref},
                    ":api": {"S": family},
                    ":end": _n(ends_at),
                    ":start": _n(now),
                    ":day": _n(day),
                    ":now": _n(now),
                    ":seconds": _n(seconds),
                    ":one": _n(1),
                    ":room": _n(self._limits.seconds_per_day - seconds),
                    # Never a timer: the item is deleted only after two idle days.
                    ":ttl": _n((day + 3) * DAY),
                },
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False, dict(exc.response.get("Item", {}))
            raise unavailable(exc) from None
        except BotoCoreError as exc:
            raise unavailable(exc) from None
        return True, dict(written.get("Attributes", {}))

    def _next_slot(self, item: dict[str, Any], now: int, seconds: int, day: int) -> int:
        """The slot the image shows free, or the refusal the image explains."""
        used = _number(item.get(f"m_{day}"))
        if used + seconds > self._limits.seconds_per_day:
            raise self._over_budget(used, seconds, now)
        n = self._limits.concurrent
        ends = [_number(item.get(f"s{i}_end")) for i in range(MAX_CONCURRENT_CALLS)]
        live = [end for end in ends if end > now]
        free = [i for i in range(n) if ends[i] <= now]
        if free and not any(end > now for end in ends[n:]):
            return free[0]
        retry = max(min(live) - now, 1)
        calls = "1 call" if len(live) == 1 else f"{len(live)} calls"
        if len(live) == n:
            why = "the most allowed at once"
        elif len(live) > n:
            why = f"more than the {n} now allowed at once"
        else:  # fewer, but one holds a slot past a limit lowered while it ran
            why = "begun under a higher limit"
        raise CallLimitExceeded(
            "concurrent",
            f"You already have {calls} in progress, {why}; "
            f"end one or try again in {retry} seconds.",
            retry,
            _minutes(self._limits.seconds_per_day - used),
        )

    def _over_budget(self, used: int, seconds: int, now: int) -> CallLimitExceeded:
        left = _minutes(self._limits.seconds_per_day - used)
        needs = math.ceil(seconds / 60)
        until_midnight = DAY - now % DAY
        return CallLimitExceeded(
            "minutes",
            f"You have {left} call minute{'s' if left != 1 else ''} left today and a call "
            f"may last up to {needs} minute{'s' if needs != 1 else ''}; "
            f"your minutes renew at midnight UTC, in {math.ceil(until_midnight / 3600)} hours.",
            until_midnight,
            left,
        )

    # --- after admission ------------------------------------------------------------------

    def record(self, reservation: Reservation, call_id: CallId, deadline: Deadline) -> None:
        """Bind OpenAI's call id to the reservation: the owner can now find and end it."""
        s = _slot_names(reservation.slot)
        with self._guard.within(deadline):
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=_key(reservation.user),
                    UpdateExpression="SET #call = :call",
                    ConditionExpression="#ref = :ref",
                    ExpressionAttributeNames={"#call": s["#call"], "#ref": s["#ref"]},
                    ExpressionAttributeValues={
                        ":call": {"S": call_id},
                        ":ref": {"S": reservation.ref},
                    },
                )
            except (ClientError, BotoCoreError) as exc:
                raise unavailable(exc) from None

    def release(self, reservation: Reservation, deadline: Deadline) -> bool:
        """A call that was never placed: the slot and every reserved second come back, and the
        slot holds again what it held before (the record of a call that had ended there)."""
        s = _slot_names(reservation.slot)
        restored = {f"#{k.split('_', 1)[1]}": k for k in reservation.displaced}
        values = {f":old_{name[1:]}": reservation.displaced[k] for name, k in restored.items()}
        removed = [name for name in s if name not in restored]
        update = " ".join(
            part
            for part in (
                "SET " + ", ".join(f"{n} = :old_{n[1:]}" for n in restored) if restored else "",
                "REMOVE " + ", ".join(removed) if removed else "",
                "ADD #used :back, #count :minus",
            )
            if part
        )
        with self._guard.within(deadline):
            try:
                left = self._conditional_settle(
                    reservation.user,
                    reservation.ref,
                    update,
                    s | {"#used": f"m_{reservation.day}", "#count": f"n_{reservation.day}"},
                    values | {":back": _n(-reservation.seconds), ":minus": _n(-1)},
                )
            except DependencyUnavailable:
                return False  # best effort: the slot frees itself at its end time anyway
        return left is not None

    def claim_end(self, call: CallRecord, reason: EndReason, deadline: Deadline) -> bool:
        """Record why a live call is about to end, before it is hung up upstream: whoever
        the browser's drop sends to the hangup route then learns the cause, however the race
        with the settle goes. The first cause recorded stands; False when another was
        recorded first or the call has ended."""
        s = _slot_names(call.slot)
        return self._write_cause(
            call.user,
            "SET #why = :why",
            "#ref = :ref AND attribute_not_exists(#done) AND attribute_not_exists(#why)",
            {k: s[k] for k in ("#ref", "#done", "#why")},
            {":why": {"S": reason.value}, ":ref": {"S": call.ref}},
            deadline,
        )

    def replace_end(
        self,
        call: CallRecord,
        claimed: EndReason,
        reason: EndReason | None,
        deadline: Deadline,
    ) -> bool:
        """Replace the cause this process claimed (`claimed`) with `reason`, or withdraw it
        (None), ended or not: only while the ledger still holds `claimed`, so another
        writer's cause is never overwritten. False when it holds something else."""
        s = _slot_names(call.slot)
        names = {k: s[k] for k in ("#ref", "#why")}
        values = {":ref": {"S": call.ref}, ":claimed": {"S": claimed.value}}
        if reason is None:
            update = "REMOVE #why"
        else:
            update = "SET #why = :why"
            values[":why"] = {"S": reason.value}
        return self._write_cause(
            call.user, update, "#ref = :ref AND #why = :claimed", names, values, deadline
        )

    def _write_cause(
        self,
        user: UserId,
        update: str,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
        deadline: Deadline,
    ) -> bool:
        """One conditional write of a call's cause; False when its condition does not hold."""
        with self._guard.within(deadline):
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=_key(user),
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
            except ClientError as exc:
                if _code(exc) == "ConditionalCheckFailedException":
                    return False
                raise unavailable(exc) from None
            except BotoCoreError as exc:
                raise unavailable(exc) from None
        return True

    def settle(self, call: CallRecord, reason: EndReason, deadline: Deadline) -> int | None:
        """End a call in the ledger: its slot frees now, the unused seconds come back, and
        `reason` is recorded unless a cause was recorded first. The minutes left on the
        call's day after it; None when it was settled already (a duplicate hangup): nothing
        changes then."""
        now = math.ceil(self._clock())
        unused = max(call.ends_at - now, 0)
        s = _slot_names(call.slot)
        update = (
            "SET #end = :ended, #done = :true, #why = if_not_exists(#why, :why) ADD #used :back"
        )
        names = {k: s[k] for k in ("#ref", "#end", "#done", "#why")} | {"#used": f"m_{call.day}"}
        values = {
            ":back": _n(-unused),
            ":ended": _n(min(int(self._clock()), call.ends_at)),
            ":true": _n(1),
            ":why": {"S": reason.value},
        }
        with self._guard.within(deadline):
            return self._conditional_settle(call.user, call.ref, update, names, values)

    def _conditional_settle(
        self, user: UserId, ref: str, update: str, names: dict[str, str], values: dict[str, Any]
    ) -> int | None:
        """One write, only while the reservation still holds its slot and is not ended."""
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key=_key(user),
                UpdateExpression=update,
                ConditionExpression="#ref = :ref AND attribute_not_exists(#done)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values | {":ref": {"S": ref}},
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return None
            raise unavailable(exc) from None
        except BotoCoreError as exc:
            raise unavailable(exc) from None
        used = _number(response.get("Attributes", {}).get(names["#used"]))
        return _minutes(self._limits.seconds_per_day - used)

    # --- reading --------------------------------------------------------------------------

    def view(self, user: UserId, deadline: Deadline) -> CallsView:
        """Every call the user's slots remember (live or ended) and the minutes left today."""
        with self._guard.within(deadline):
            try:
                item = self._client.get_item(
                    TableName=self._table, Key=_key(user), ConsistentRead=True
                ).get("Item", {})
            except (ClientError, BotoCoreError) as exc:
                raise unavailable(exc) from None
        day = int(self._clock()) // DAY
        calls = []
        # Every slot the item may hold: a plan (or an override) may allow more than this
        # ledger's limits, and its calls must still be found, ended and settled.
        for i in range(MAX_CONCURRENT_CALLS):
            call = item.get(f"s{i}_call", {}).get("S")
            ref = item.get(f"s{i}_ref", {}).get("S")
            if call and ref:
                calls.append(
                    CallRecord(
                        user=user,
                        id=CallId(call),
                        slot=i,
                        ref=ref,
                        started_at=_number(item.get(f"s{i}_start")),
                        ends_at=_number(item.get(f"s{i}_end")),
                        day=_number(item.get(f"s{i}_day")),
                        done=f"s{i}_done" in item,
                        reason=item.get(f"s{i}_why", {}).get("S"),
                        family=item.get(f"s{i}_api", {}).get("S", "realtime"),
                    )
                )
        used = _number(item.get(f"m_{day}"))
        return CallsView(tuple(calls), _minutes(self._limits.seconds_per_day - used), used)


def _slot_names(slot: int) -> dict[str, str]:
    return {f"#{name}": f"s{slot}_{name}" for name in SLOT_FIELDS}


def _key(user: UserId) -> dict[str, Any]:
    return {"pk": {"S": f"calls#{user}"}}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _number(attribute: dict[str, str] | None) -> int:
    return int(attribute["N"]) if attribute and "N" in attribute else 0


def _minutes(seconds: int) -> int:
    return max(seconds, 0) // 60


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
