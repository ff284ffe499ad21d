"""One user: who (the hash the functions key and log them by), their state, their controls,
their live calls, and ending one."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from token_vendor.api.auth import Caller
from token_vendor.api.windows import parse_quotas
from token_vendor.core.controls import OVERRIDABLE, ControlReader, Controls, ControlWriter
from token_vendor.core.deadline import Deadline
from token_vendor.core.ending import CallRecord, EndReason
from token_vendor.core.ids import UserId
from token_vendor.core.ledger import CallLedger
from token_vendor.core.settings import MAX_CONCURRENT_CALLS, CallLimits
from token_vendor.core.spend import SpendLimits

from .connect import OpsError, Target
from .usage import DAY, SPEND, day_name

_HASH = re.compile(r"^[0-9a-f]{32}$")
_DURATION = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400}
# Any limits will do for reading: the ledger reads every slot, and these figures are unused.
_READING = CallLimits(MAX_CONCURRENT_CALLS, DAY)


def user_id(user: str, issuer: str | None) -> UserId:
    """The user's hash (as the logs' `user` field shows it), or their hash from the token's
    `sub` and the issuer (`--issuer`)."""
    if issuer:
        return Caller(issuer=issuer, subject=user, scopes=frozenset(), kid=None).user_hash
    if not _HASH.fullmatch(user):
        raise OpsError(
            f"{user!r} is not a user's hash (32 hex digits, the logs' `user` field): "
            "give the token's subject with --issuer ISSUER to find it"
        )
    return UserId(user)


def check_value(limit: str, value: str) -> None:
    """An override is written only in its variable's syntax (the functions would skip it)."""
    problems: list[str] = []
    if limit == "quotas":
        parse_quotas(value, problems, "quotas")
    elif limit == "call_limits":
        CallLimits.parse(value, problems)
    elif limit == "spend_limits":
        spend = SpendLimits.parse(value, problems)
        if not problems and spend.user_micros is None:
            problems.append("a spend override sets the user's budget: usd/day=...")
    else:
        problems.append(f"no such limit {limit!r}: one of {', '.join(OVERRIDABLE)}")
    if problems:
        raise OpsError("; ".join(problems))


def until(for_: str | None, at: str | None, now: float) -> int:
    if bool(for_) == bool(at):
        raise OpsError("say how long: --for 2h (m, h or d) or --until 2026-12-31T00:00Z")
    if for_:
        found = _DURATION.fullmatch(for_)
        if not found:
            raise OpsError(f"--for {for_!r}: expected a number and m, h or d (30m, 2h, 7d)")
        return int(now) + int(found.group(1)) * _UNITS[found.group(2)]
    assert at is not None
    try:
        moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        raise OpsError(f"--until {at!r}: expected an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment.timestamp() <= now:
        raise OpsError(f"--until {at}: that is in the past")
    return int(moment.timestamp())


@dataclass
class Users:
    target: Target
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    @property
    def ledger(self) -> CallLedger:
        return CallLedger(self.target.table, _READING, self.target.client, clock=self.clock)

    def controls(self, user: UserId) -> Controls:
        return ControlReader(self.target.table, self.target.client).read(user)

    def writer(self) -> ControlWriter:
        return ControlWriter(self.target.table, self.target.client, self.clock)

    def known(self, user: UserId) -> bool:
        """Whether the table knows the user: a calls item (kept two idle days), a control,
        or spend today."""
        keys = [f"calls#{user}", f"control#{user}", f"{SPEND}{user}#{day_name(self.clock())}"]
        found = self.target.client.batch_get_item(
            RequestItems={
                self.target.table: {
                    "Keys": [{"pk": {"S": k}} for k in keys],
                    "ProjectionExpression": "pk",
                }
            }
        )
        return bool(found.get("Responses", {}).get(self.target.table))

    def require(self, user: UserId, force: bool = False) -> None:
        if not force and not self.known(user):
            raise OpsError(
                f"unknown user {user}: no calls, controls or spend of theirs in the table "
                "(check the hash, or --issuer; --force acts anyway)"
            )

    def state(self, user: UserId) -> dict[str, Any]:
        self.require(user)
        now = self.clock()
        day = int(now // DAY)
        item = self.target.client.get_item(
            TableName=self.target.table, Key={"pk": {"S": f"calls#{user}"}}, ConsistentRead=True
        ).get("Item", {})
        spend = self.target.client.get_item(
            TableName=self.target.table,
            Key={"pk": {"S": f"{SPEND}{user}#{day_name(now)}"}},
            ConsistentRead=True,
        ).get("Item", {})
        controls = self.controls(user)
        return {
            "user": user,
            "blocked": controls.blocked,
            "blocked_at": controls.blocked_at,
            "blocked_why": controls.blocked_why,
            "overrides": {
                name: {
                    "value": o.value,
                    "until": _iso(o.until),
                    "in_force": o.until > now,
                }
                for name, o in controls.overrides.items()
            },
            "today": {
                "calls": int(item.get(f"n_{day}", {}).get("N", 0)),
                "seconds": int(item.get(f"m_{day}", {}).get("N", 0)),
                "spend_micros": int(spend.get("micros", {}).get("N", 0)),
            },
            "live_calls": [describe(c) for c in self.live(user)],
        }

    def live(self, user: UserId) -> list[CallRecord]:
        view = self.ledger.view(user, Deadline(10))
        now = self.clock()
        return [c for c in view.calls if not c.done and c.ends_at > now]

    def all_live(self) -> list[CallRecord]:
        from .usage import CALLS, scan

        users = [UserId(i["pk"]["S"].removeprefix(CALLS)) for i in scan(self.target, (CALLS,))]
        return [call for user in sorted(users) for call in self.live(user)]

    def end(self, user: UserId, call_id: str, wait: float) -> str:
        """Ask the call's watcher to end it (the control item's `end_calls`) and wait for the
        ledger to say it ended; the reason it ended for."""
        if not any(c.id == call_id for c in self.live(user)):
            raise OpsError(f"no live call {call_id} of user {user}")
        writer = self.writer()
        writer.end_call(user, call_id)
        until = self.clock() + wait
        while self.clock() < until:
            call = self.ledger.view(user, Deadline(10)).find(call_id)
            if call is None or call.done:
                writer.forget_call(user, call_id)
                reason = call.reason if call is not None and call.reason else "ended"
                return str(EndReason.read(reason) if reason != "ended" else reason)
            self.sleep(0.5)
        raise OpsError(
            f"asked call {call_id}'s watcher to end it; not ended within {wait:g} s "
            "(is a watcher running? the request stays, and the call's deadline ends it anyway)"
        )


def describe(call: CallRecord) -> dict[str, Any]:
    return {
        "id": call.id,
        "user": call.user,
        "api": call.family,
        "started_at": _iso(call.started_at),
        "ends_at": _iso(call.ends_at),
    }


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
