"""In-memory fakes of the call machinery's ports (core.ending's Ledger, Upstream, Schedules):
the same conditional rules as the DynamoDB ledger (the first cause recorded stands; a claim is
replaced only while it is held; a call settles once), in a form a unit test can drive step by
step and interleave."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from token_vendor.core.deadline import Deadline
from token_vendor.core.ending import CallRecord, CallsView, EndReason
from token_vendor.core.errors import DependencyUnavailable, UpstreamRejected
from token_vendor.core.ids import CallId, UserId

DAY_SECONDS = 3600  # the fake's whole budget of call seconds per day


@dataclass
class FakeLedger:
    """One user's calls, by id, with the minutes left; every write as DynamoDB's condition
    would decide it. `before` runs before each operation (a race a test plants)."""

    time: float = 1000.0
    records: dict[CallId, CallRecord] = field(default_factory=dict)
    used: int = 0
    writes: list[str] = field(default_factory=list)
    before: dict[str, Callable[[], None]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)

    def place(self, user: UserId, call_id: str, seconds: int = 600) -> CallRecord:
        record = CallRecord(
            user=user, id=CallId(call_id), slot=len(self.records), ref=f"ref-{call_id}",
            started_at=int(self.time), ends_at=int(self.time) + seconds, day=0, done=False,
        )  # fmt: skip
        self.records[record.id] = record
        self.used += seconds
        return record

    def _step(self, name: str) -> None:
        if hook := self.before.pop(name, None):
            hook()
        if name in self.failing:
            raise DependencyUnavailable("quota_store", "DynamoDB: ServiceUnavailable")

    def now(self) -> float:
        return self.time

    # --- the Ledger protocol ------------------------------------------------------------------

    def view(self, user: UserId, deadline: Deadline) -> CallsView:
        self._step("view")
        calls = tuple(r for r in self.records.values() if r.user == user)
        return CallsView(calls, max(DAY_SECONDS - self.used, 0) // 60)

    def claim_end(self, call: CallRecord, reason: EndReason, deadline: Deadline) -> bool:
        self._step("claim_end")
        held = self.records[call.id]
        if held.ref != call.ref or held.done or held.reason is not None:
            return False
        self.records[call.id] = replace(held, reason=reason.value)
        self.writes.append(f"claim {reason.value}")
        return True

    def replace_end(
        self, call: CallRecord, claimed: EndReason, reason: EndReason | None, deadline: Deadline
    ) -> bool:
        self._step("replace_end")
        held = self.records[call.id]
        if held.ref != call.ref or held.reason != claimed.value:
            return False
        self.records[call.id] = replace(held, reason=None if reason is None else reason.value)
        self.writes.append(f"replace {claimed.value} -> {reason.value if reason else None}")
        return True

    def settle(self, call: CallRecord, reason: EndReason, deadline: Deadline) -> int | None:
        self._step("settle")
        held = self.records[call.id]
        if held.ref != call.ref or held.done:
            return None
        unused = max(held.ends_at - int(self.time), 0)
        self.used -= unused
        ended = min(int(self.time), held.ends_at)
        self.records[call.id] = replace(
            held, done=True, ends_at=ended, reason=held.reason or reason.value
        )
        self.writes.append(f"settle {reason.value}")
        return max(DAY_SECONDS - self.used, 0) // 60


@dataclass
class FakeUpstream:
    """OpenAI's side of calls: which are live, and what each hangup does. `answers` scripts the
    next hangups: "ended" (200), "gone" (404) or "fails" (a 5xx after its retries)."""

    live: set[CallId] = field(default_factory=set)
    answers: list[str] = field(default_factory=list)
    hung_up: list[CallId] = field(default_factory=list)
    # Runs once the next hangup has taken effect upstream, before its answer is back: what the
    # call's end sets off meanwhile (the sideband closes, its watcher ends the call).
    then: Callable[[], object] | None = None

    def hang_up(self, call_id: CallId, deadline: Deadline, user: UserId | None = None) -> bool:
        answer = self.answers.pop(0) if self.answers else None
        if answer == "fails":
            raise UpstreamRejected("openai", "HTTP 500 (server_error)", 500)
        self.hung_up.append(call_id)
        ended = not (answer == "gone" or (answer is None and call_id not in self.live))
        self.live.discard(call_id)
        if self.then is not None:
            then, self.then = self.then, None
            then()
        return ended


@dataclass
class FakeSchedules:
    deleted: list[CallId] = field(default_factory=list)

    def delete(self, call_id: CallId, deadline: Deadline) -> bool:
        self.deleted.append(call_id)
        return True
