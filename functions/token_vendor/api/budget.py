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
from typing import Protocol

from ..core.aws import ATTEMPT_SECONDS
from ..core.deadline import Deadline
from ..core.errors import DependencyUnavailable
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


class Budget:
    def __init__(self, spend: Spend | None, prices: PriceTable, executor: Executor) -> None:
        self._spend = spend
        self._prices = prices
        self._executor = executor

    @property
    def limits(self) -> SpendLimits:
        return self._spend.limits if self._spend is not None else SpendLimits()

    def read(self, user: UserId, deadline: Deadline) -> Future[DaySpend] | None:
        """Today's spend, read on the executor; None when no budget is set (no read)."""
        if self._spend is None or not self._spend.limits.any:
            return None
        return self._executor.submit(self._spend.today, user, deadline)

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

    def check(self, pending: Future[DaySpend] | None, profile: Profile, deadline: Deadline) -> None:
        """Raises SpendLimitExceeded when what is left is below the floor, and
        DependencyUnavailable (503) when the spend could not be read: a call costs money."""
        if pending is None:
            return
        refusal = self.wait(pending, deadline).refusal(self.floor(profile))
        if refusal is not None:
            raise refusal

    @staticmethod
    def wait(pending: Future[DaySpend], deadline: Deadline) -> DaySpend:
        """The read, waited for one DynamoDB attempt at most (it began beside the admission,
        so it has had that long too): never the whole request's time, which must still hold
        the release and the give-back of a refused request."""
        try:
            return pending.result(timeout=deadline.cap(ATTEMPT_SECONDS))
        except FutureTimeout:
            raise DependencyUnavailable("spend_ledger", "no answer in time", 2) from None
