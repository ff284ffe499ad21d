"""The operator's controls of one watched user (core.controls), read while the call runs.

Every CONTROL_POLL_SECONDS the watcher reads the user's control item (one strongly consistent
GetItem): a block ends the call (`blocked`) within that time and one loop; an override of the
spend budget replaces the plan's budget the token function told the watcher (the job's
`budget_micros`), from the next charge on. A read that fails is tried again at the next poll,
counted (`WatcherFailures`, stage `controls`): the call runs on meanwhile, as it would between
two polls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from ..core.controls import NONE, Controls
from ..core.deadline import Deadline
from ..core.errors import TokenVendorError
from ..core.ids import CallId, UserId
from ..core.spend import Charge, SpendLimits

CONTROL_POLL_SECONDS = 2.0


class Reader(Protocol):  # core.controls.ControlReader
    def read(self, user: UserId, deadline: Deadline | None = None) -> Controls: ...


class Meter(Protocol):  # core.spend.SpendLedger
    def charge(
        self,
        *,
        call_id: CallId,
        user: UserId,
        event_key: str,
        micros: int,
        deadline: Deadline | None = None,
    ) -> Charge: ...

    def charge_total(
        self,
        *,
        call_id: CallId,
        user: UserId,
        counter: str,
        total_micros: int,
        deadline: Deadline | None = None,
    ) -> Charge: ...


class UserControls:
    """One watched user's controls, polled; and the spend ledger as their watcher sees it:
    each charge's day under the user's own budget (their plan's, or the override in force)."""

    def __init__(
        self,
        reader: Reader | None,
        user: UserId,
        meter: Meter,
        budget_micros: int | None,
        metrics: Any,
        log: logging.Logger | Any,
        poll_seconds: float = CONTROL_POLL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._reader = reader
        self._user = user
        self._meter = meter
        self._budget = budget_micros
        self._metrics = metrics
        self._log = log
        self._poll = poll_seconds
        self._next = 0.0
        self.controls: Controls = NONE

    def blocked(self, now: float) -> bool:
        """Whether the user is blocked, read again when a poll is due."""
        if self._reader is None or now < self._next:
            return self.controls.blocked
        self._next = now + self._poll
        try:
            self.controls = self._reader.read(self._user, Deadline(1.0))
        except TokenVendorError as exc:
            self._log.warning("controls not read", extra={"error": str(exc)})
            self._metrics.count("WatcherFailures", stage="controls")
        return self.controls.blocked

    def next_poll(self) -> float | None:
        return self._next if self._reader is not None else None

    def budget(self, now: float) -> int | None:
        """The user's daily budget now (micro-dollars; None: the watcher's SPEND_LIMITS)."""
        raw = self.controls.override("spend_limits", now)
        if raw is not None:
            problems: list[str] = []
            override = SpendLimits.parse(raw, problems)
            if not problems and override.user_micros is not None:
                return override.user_micros
        return self._budget

    # --- the meter, as the watch loop uses it -----------------------------------------------

    def charge(
        self,
        *,
        call_id: CallId,
        user: UserId,
        event_key: str,
        micros: int,
        deadline: Deadline | None = None,
    ) -> Charge:
        charge = self._meter.charge(
            call_id=call_id, user=user, event_key=event_key, micros=micros, deadline=deadline
        )
        return self._under_budget(charge)

    def charge_total(
        self,
        *,
        call_id: CallId,
        user: UserId,
        counter: str,
        total_micros: int,
        deadline: Deadline | None = None,
    ) -> Charge:
        charge = self._meter.charge_total(
            call_id=call_id, user=user, counter=counter, total_micros=total_micros,
            deadline=deadline,
        )  # fmt: skip
        return self._under_budget(charge)

    def _under_budget(self, charge: Charge) -> Charge:
        budget = self.budget(self._clock())
        if charge.day is None or budget is None:
            return charge
        day = charge.day
        return replace(charge, day=replace(day, limits=replace(day.limits, user_micros=budget)))
