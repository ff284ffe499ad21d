"""The spend budget at admission, the same for both routes: a caller whose budget (or the
service's, the operator's kill switch) cannot pay for one more response gets no call and no
client secret (429 `spend-limit` until the next UTC day).

The day's spend is read beside the admission's own write (one round trip of wall time less);
a refusal then gives back what the admission took. "One more response" is the floor: the
configured `floor:usd` of SPEND_LIMITS, or else one response like the profile's dearest (its
`max_output_tokens`, or OpenAI's cap of 4,096 when unset, at the dearest output price of its
models). Without the floor, a user with one micro-dollar left would start a call that costs
a dollar.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..core.aws import ATTEMPT_SECONDS
from ..core.controls import NONE, control_key, parse_controls
from ..core.controls import Controls as UserControls
from ..core.deadline import Deadline
from ..core.errors import DependencyUnavailable, UserBlocked
from ..core.ids import CallId, UserId
from ..core.parsing import is_int
from ..core.pricing import PriceTable, live_cost
from ..core.spend import LIVE_UP_FRONT_SECONDS, VOICE_TOTAL, Charge, DaySpend, SpendLimits
from .policy import CallPlan
from .profiles import Profile

MAX_RESPONSE_TOKENS = 4096  # OpenAI's largest max_output_tokens; "inf" allows this many


class Spend(Protocol):  # the spend ledger (core.spend.SpendLedger)
    limits: SpendLimits

    def today(self, user: UserId, deadline: Deadline | None = None) -> DaySpend: ...
    def today_with(
        self, user: UserId, others: tuple[str, ...], deadline: Deadline | None = None
    ) -> tuple[DaySpend, dict[str, dict[str, Any]]]: ...
    def charge_total(
        self,
        *,
        call_id: CallId,
        user: UserId,
        counter: str,
        total_micros: int,
        deadline: Deadline | None = None,
    ) -> Charge: ...


def response_floor(profile: Profile, prices: PriceTable) -> int:
    """Micro-dollars: one response like the profile's dearest; for a GPT-Live profile, the
    15 s each create bills whatever happens next."""
    if profile.family == "live":
        return max(
            live_cost(LIVE_UP_FRONT_SECONDS, 0, prices.for_live(m)[0]) for m in profile.models
        )
    limit = profile.session.get("max_output_tokens", "inf")
    tokens = limit if is_int(limit) else MAX_RESPONSE_TOKENS
    dearest = max(max(prices.for_model(m)[0].output.values(), default=0) for m in profile.models)
    return math.ceil(tokens * dearest)


class Controls(Protocol):  # core.controls.ControlReader
    def read(self, user: UserId, deadline: Deadline | None = None) -> UserControls: ...


@dataclass(frozen=True)
class Standing:
    """What an admission reads beside its first write: today's spend (None when no budget
    is set) and the operator's controls of the user."""

    day: DaySpend | None
    controls: UserControls = NONE


class Budget:
    def __init__(
        self,
        spend: Spend | None,
        prices: PriceTable,
        executor: Executor,
        controls: Controls | None = None,
    ) -> None:
        self._spend = spend
        self._prices = prices
        self._executor = executor
        # USER_CONTROLS=on: the user's controls are read with the spend (one more key of the
        # same BatchGetItem), or alone beside the first write when no budget is set.
        self._controls = controls

    @property
    def limits(self) -> SpendLimits:
        return self._spend.limits if self._spend is not None else SpendLimits()

    def read(self, user: UserId, deadline: Deadline) -> Future[Standing] | None:
        """Today's spend and the user's controls, read on the executor; None when neither is
        asked for (no read)."""
        spend = self._spend is not None and self._spend.limits.any
        if not spend and self._controls is None:
            return None
        return self._executor.submit(self._standing, user, deadline)

    def _standing(self, user: UserId, deadline: Deadline) -> Standing:
        if self._spend is None or not self._spend.limits.any:
            assert self._controls is not None
            return Standing(None, self._controls.read(user, deadline))
        if self._controls is None:
            return Standing(self._spend.today(user, deadline))
        key = control_key(user)["pk"]["S"]
        day, items = self._spend.today_with(user, (key,), deadline)
        return Standing(day, parse_controls(items.get(key)))

    def charge_up_front(
        self, plan: CallPlan, call_id: CallId, user: UserId, deadline: Deadline
    ) -> None:
        """A GPT-Live session's first 15 s, which OpenAI bills at each WebRTC create (counted
        toward the session, not added to it): the session's voice total starts there, so its
        watcher charges only what the session uses beyond them."""
        if self._spend is None:
            return
        price, _ = self._prices.for_live(plan.model)
        self._spend.charge_total(
            call_id=call_id,
            user=user,
            counter=VOICE_TOTAL,
            total_micros=live_cost(LIVE_UP_FRONT_SECONDS, 0, price),
            deadline=deadline,
        )

    def today(self, user: UserId, deadline: Deadline) -> DaySpend | None:
        """Today's spend, read now; None when no budget is set."""
        if self._spend is None or not self._spend.limits.any:
            return None
        return self._spend.today(user, deadline)

    def floor(self, profile: Profile) -> int:
        configured = self.limits.floor_micros
        return configured if configured is not None else response_floor(profile, self._prices)

    def check(
        self,
        pending: Future[Standing] | None,
        profile: Profile,
        deadline: Deadline,
        user_micros: int | None = None,
    ) -> Standing | None:
        """Raises UserBlocked for a blocked user, SpendLimitExceeded when what is left is
        below the floor (of `user_micros`, the user's budget, when given: their plan's or
        override's), and DependencyUnavailable (503) when either could not be read: a call
        costs money, and a block must hold."""
        if pending is None:
            return None
        standing = self.wait(pending, deadline)
        if standing.controls.blocked:
            raise UserBlocked()
        day = standing.day
        if day is not None:
            if user_micros is not None:
                day = replace(day, limits=replace(day.limits, user_micros=user_micros))
                standing = replace(standing, day=day)
            refusal = day.refusal(self.floor(profile))
            if refusal is not None:
                raise refusal
        return standing

    @staticmethod
    def wait(pending: Future[Standing], deadline: Deadline) -> Standing:
        """The read, waited for one DynamoDB attempt at most (it began beside the admission,
        so it has had that long too): never the whole request's time, which must still hold
        the release and the give-back of a refused request."""
        try:
            return pending.result(timeout=deadline.cap(ATTEMPT_SECONDS))
        except FutureTimeout:
            raise DependencyUnavailable("spend_ledger", "no answer in time", 2) from None
