"""Ending a call: the one way, for the owner's hangup, the scheduled deadline and the watcher.

Every end takes the same steps, in this order:
1. read the call's record in the call ledger;
2. record why it is ending (`claim_end`), before anything upstream happens: the browser
   notices the hangup within milliseconds and asks the hangup route why, and must hear this
   cause, not a guess. The first cause recorded stands;
3. hang it up upstream. A failure is raised: the call lives on, so nothing is settled (the
   claim is withdrawn, so whoever ends the call later says why);
4. settle it in the ledger: the slot frees, the unused minutes come back, exactly once.

What differs is only who asks, and so what a missing or unreadable record means: the owner
must be shown to own the call (`CallNotFound` otherwise); the deadline and the watcher hang up
whatever the ledger says (a ledger that cannot be read must not keep a call alive).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from .deadline import Deadline
from .errors import CallNotFound, DependencyError
from .ids import CallId, UserId


class EndReason(StrEnum):
    """Why a call ended, as the ledger records it and the hangup route reports it."""

    HANGUP = "hangup"  # its owner, through the API
    DEADLINE = "deadline"  # the server's deadline (the schedule, or the watcher at `ends_at`)
    SPEND_LIMIT = "spend_limit"  # the user's (or everyone's) spend budget was used up
    POLICY = "policy"  # the session was changed against the profile (the watcher)
    CLOSED = "closed"  # the line closed without the server ending it
    SESSION_EXPIRED = "session_expired"  # OpenAI's own 60-minute cap
    # No watcher could hold the call (none attached in time, a start lost, a watcher that
    # failed): a call nobody meters or guards is ended, unless the operator allows it.
    UNWATCHED = "unwatched"
    CONTENT = "content"  # OpenAI's safety system stopped the session (GPT-Live)
    BLOCKED = "blocked"  # the operator blocked the user (`make ops block`): the watcher
    OPERATOR = "operator"  # the operator ended this call (`make ops end`): the watcher

    @classmethod
    def read(cls, stored: str) -> EndReason:
        """A cause read back from the ledger: one of ours, or `closed` for one this code does
        not know (written by another version of it, e.g. before a rollback). `closed` claims
        nothing about who ended the call; an unknown word would break clients that switch on
        openapi.json's enum (the page words its sentence from it)."""
        try:
            return cls(stored)
        except ValueError:
            return cls.CLOSED


@dataclass(frozen=True)
class CallRecord:
    """One call as a slot of the user's calls item remembers it."""

    user: UserId
    id: CallId
    slot: int
    ref: str
    started_at: int
    ends_at: int
    day: int
    done: bool
    reason: str | None = None  # why it ended (or is being ended), when recorded
    family: str = "realtime"  # the OpenAI API it runs on: "realtime" or "live"


@dataclass(frozen=True)
class CallsView:
    calls: tuple[CallRecord, ...]
    minutes_left: int
    used_seconds: int = 0  # reserved today (what the minutes left are counted from)

    def find(self, call_id: str, *, live_only: bool = False) -> CallRecord | None:
        """The call with this id (only while not ended, with `live_only`), or None."""
        return next((c for c in self.calls if c.id == call_id and not (live_only and c.done)), None)


class Ledger(Protocol):  # the call ledger (core.ledger.CallLedger)
    def now(self) -> float: ...
    def view(self, user: UserId, deadline: Deadline) -> CallsView: ...
    def claim_end(self, call: CallRecord, reason: EndReason, deadline: Deadline) -> bool: ...
    def replace_end(
        self,
        call: CallRecord,
        claimed: EndReason,
        reason: EndReason | None,
        deadline: Deadline,
    ) -> bool: ...
    def settle(self, call: CallRecord, reason: EndReason, deadline: Deadline) -> int | None: ...


class Upstream(Protocol):  # OpenAI's side of a call
    def hang_up(self, call_id: CallId, deadline: Deadline, user: UserId | None = None) -> bool:
        """True when this request ended the call; False when it was gone already. A failure
        to learn either is raised. `user`, the call's owner: a GPT-Live session's final usage
        comes with its close, and is charged to them."""


class Schedules(Protocol):  # the call's scheduled deadline (api.schedule.HangupScheduler)
    def delete(self, call_id: CallId, deadline: Deadline) -> bool: ...


# Why a call ended that nobody said why for (it was gone upstream before the owner's hangup).
Inference = Callable[[CallRecord, Deadline], EndReason]


@dataclass(frozen=True)
class Ending:
    """How an end went: the call's record (None when the ledger did not know it or could not
    be read), why it ended, whether this request settled it, and what is left today."""

    call: CallRecord | None
    reason: EndReason
    settled: bool
    minutes_left: int | None
    ended_at: int


class CallEnder:
    def __init__(
        self,
        ledger: Ledger,
        upstream: Upstream,
        *,
        live: Upstream | None = None,
        schedules: Schedules | None = None,
        infer: Inference | None = None,
        log: logging.Logger | Any = None,
    ) -> None:
        """`upstream` ends Realtime calls; `live` GPT-Live sessions (`upstream` when None)."""
        self._ledger = ledger
        self._upstreams = {"realtime": upstream, "live": live or upstream}
        self._schedules = schedules
        self._infer = infer or (lambda call, deadline: EndReason.CLOSED)
        self._log = log or logging.getLogger(__name__)

    def end(
        self,
        *,
        user: UserId,
        call_id: CallId,
        reason: EndReason,
        deadline: Deadline,
        family: str = "realtime",
        upstream_ended: bool = False,
    ) -> Ending:
        """The server ends a call (its deadline, its watcher). The hangup is not held up by a
        ledger that cannot be read or does not know the call: it happens anyway (through the
        `family`'s upstream when the ledger cannot say). `upstream_ended`: OpenAI said the
        session is over (GPT-Live's `session.closed`), so it is only settled."""
        try:
            call: CallRecord | None = self._ledger.view(user, deadline).find(call_id)
            read = True
        except DependencyError as exc:
            self._log.warning("call ledger not read before the hangup", extra={"error": str(exc)})
            call, read = None, False
        if call is not None and call.done:
            return self._already_ended(call, reason, None)
        claimed = self._claim(call, reason, deadline)
        if not upstream_ended:
            self._hang_up(call_id, call, claimed, deadline, family, user)
        if not read:
            call = self._ledger.view(user, deadline).find(call_id)
        if call is None or call.done:
            return Ending(call, reason, False, None, self._ended_at(call))
        final = EndReason.read(call.reason) if call.reason else reason
        return self._settle(call, final, claimed is not None or call.reason is not None, deadline)

    def end_for_owner(self, *, user: UserId, call_id: CallId, deadline: Deadline) -> Ending:
        """The owner ends a call (or, after its connection dropped, asks whether and why it
        ended). Anyone else learns nothing: CallNotFound. Idempotent."""
        view = self._ledger.view(user, deadline)
        call = view.find(call_id)
        if call is None:
            raise CallNotFound(call_id)
        if call.done:
            reason = EndReason.read(call.reason) if call.reason else self._infer(call, deadline)
            return self._already_ended(call, reason, view.minutes_left)
        claimed = self._claim(call, EndReason.HANGUP, deadline)
        ended_here = self._hang_up(call_id, call, claimed, deadline, call.family, user)
        if self._schedules is not None:  # ended before its deadline: the schedule goes
            self._schedules.delete(call_id, deadline)
        if call.reason is not None:
            # Whoever is ending it said why first; this settle's cause is then ignored.
            reason = EndReason.read(call.reason)
        elif ended_here:
            reason = EndReason.HANGUP
        else:  # gone upstream before this hangup: not the owner's doing
            reason = self._infer(call, deadline)
            if claimed is not None:
                self._replace(call, claimed, reason, deadline)
        return self._settle(call, reason, claimed is not None or call.reason is not None, deadline)

    def claim(
        self, *, user: UserId, call_id: CallId, reason: EndReason, deadline: Deadline
    ) -> None:
        """Record why a call is about to end, ahead of an end that happens elsewhere (a GPT-Live
        session's `session.close`, sent on its watcher's sideband): the browser notices the
        end and asks the hangup route why. Best effort: the end settles with its cause anyway."""
        try:
            call = self._ledger.view(user, deadline).find(call_id)
        except DependencyError as exc:
            self._log.warning("end cause not recorded", extra={"reason": str(exc)})
            return
        if call is not None and not call.done:
            self._claim(call, reason, deadline)

    # --- the steps ---------------------------------------------------------------------------

    def _claim(
        self, call: CallRecord | None, reason: EndReason, deadline: Deadline
    ) -> EndReason | None:
        """The cause, recorded before the upstream hangup (None when it was not: another was
        recorded first, or the ledger could not record it, which holds no end up)."""
        if call is None or call.reason is not None:
            return None
        try:
            return reason if self._ledger.claim_end(call, reason, deadline) else None
        except DependencyError as exc:
            self._log.warning("end cause not recorded", extra={"reason": str(exc)})
            return None

    def _replace(
        self,
        call: CallRecord,
        claimed: EndReason,
        reason: EndReason | None,
        deadline: Deadline,
    ) -> None:
        """This request's claim, replaced by `reason` (None: withdrawn). Only while the ledger
        still holds the claim: another writer's cause is never overwritten."""
        try:
            self._ledger.replace_end(call, claimed, reason, deadline)
        except DependencyError as exc:
            self._log.warning("end cause not corrected", extra={"reason": str(exc)})

    def _hang_up(
        self,
        call_id: CallId,
        call: CallRecord | None,
        claimed: EndReason | None,
        deadline: Deadline,
        family: str,
        user: UserId,
    ) -> bool:
        upstream = self._upstreams[call.family if call is not None else family]
        try:
            return upstream.hang_up(call_id, deadline, user)
        except Exception:  # the call lives on: whoever ends it later says why
            if claimed is not None and call is not None:
                self._replace(call, claimed, None, deadline)
            raise

    def _settle(
        self, call: CallRecord, reason: EndReason, ours: bool, deadline: Deadline
    ) -> Ending:
        left = self._ledger.settle(call, reason, deadline)
        ended_at = self._ended_at(call)
        if left is not None and ours:
            return Ending(call, reason, True, left, ended_at)
        # Settled meanwhile by whoever ended it (the watcher), or a cause recorded between
        # this request's read and its claim: their cause stands, and the minutes left are the
        # ones after their settle, not the ones read before it.
        after = self._ledger.view(call.user, deadline)
        settled = after.find(call.id)
        if settled is not None and settled.reason:
            reason = EndReason.read(settled.reason)
        return Ending(call, reason, left is not None, after.minutes_left, ended_at)

    def _already_ended(
        self, call: CallRecord, reason: EndReason, minutes_left: int | None
    ) -> Ending:
        stored = EndReason.read(call.reason) if call.reason else reason
        return Ending(call, stored, False, minutes_left, call.ends_at)

    def _ended_at(self, call: CallRecord | None) -> int:
        now = int(self._ledger.now())
        return now if call is None else min(now, call.ends_at)
