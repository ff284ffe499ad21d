"""Ending a GPT-Live session from outside its watch: attach a sideband of our own, send
`session.close`, read until `session.closed` (the only event that confirms a session is over
and what it used; docs/live.md). OpenAI documents a REST hangup for SIP sessions only, so a
WebRTC session is closed this way: by the owner's hangup and the scheduled deadline (through
the token function, which invokes this function's `close` action), and by a watcher whose own
sideband is gone.

The final usage in `session.closed` is charged to the session's owner as the running total of
its voice (`core.spend.SpendLedger.charge_total`: exactly once, whoever else reports it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.deadline import Deadline
from ..core.errors import DependencyUnavailable, TokenVendorError
from ..core.ids import CallId, UserId
from ..core.openai_key import OpenAIKeyStore
from ..core.pricing import PriceTable, live_usage_cost
from ..core.spend import VOICE_TOTAL, SpendLedger
from .sideband import OPEN_TIMEOUT, Sideband, SidebandClosed, SidebandRefused

READ_SECONDS = 0.5


@dataclass(frozen=True)
class Closing:
    """How a close went: whether this close ended the session (False: it was gone already),
    and what `session.closed` said (None when the line closed without it)."""

    closed: bool
    reason: str | None = None
    usage: dict[str, Any] | None = None
    model: str = ""


class LiveSessionCloser:
    def __init__(
        self,
        base_url: str,
        keys: OpenAIKeyStore,
        spend: SpendLedger,
        prices: PriceTable,
        *,
        open_sideband: Callable[..., Sideband] = Sideband.open,
        log: logging.Logger | Any = None,
    ) -> None:
        self._base_url = base_url
        self._keys = keys
        self._spend = spend
        self._prices = prices
        self._open = open_sideband
        self._log = log or logging.getLogger(__name__)

    def hang_up(self, call_id: CallId, deadline: Deadline, user: UserId | None = None) -> bool:
        """core.ending's upstream for a Live session: True when this close ended it, False when
        it was gone already; raised when neither is known (it may live on). Its final usage is
        charged to `user`."""
        closing = self.close(call_id, deadline)
        if user is not None and closing.usage is not None:
            self.charge_final(call_id, user, closing)
        return closing.closed

    def close(self, call_id: CallId, deadline: Deadline) -> Closing:
        try:
            sideband = self._open(
                self._base_url,
                self._keys.get(),
                call_id,
                timeout=deadline.cap(OPEN_TIMEOUT),
                family="live",
            )
        except SidebandRefused as exc:
            if exc.status == 404:  # OpenAI no longer knows it: over already
                return Closing(False)
            raise DependencyUnavailable("openai", f"sideband refused ({exc.status})", 2) from None
        try:
            try:
                sideband.send({"type": "session.close"})
            except SidebandClosed:
                raise DependencyUnavailable("openai", "the sideband closed at once", 2) from None
            return self._await_closed(sideband, deadline)
        finally:
            sideband.close()

    def _await_closed(self, sideband: Sideband, deadline: Deadline) -> Closing:
        while deadline.remaining() > 0:
            try:
                event = sideband.recv(min(READ_SECONDS, deadline.remaining()))
            except SidebandClosed:
                # Closed after our close: the session ended, what it used unconfirmed.
                return Closing(True)
            if event is not None and event.get("type") == "session.closed":
                usage = event.get("usage")
                session = event.get("session")
                model = session.get("model") if isinstance(session, dict) else None
                return Closing(
                    True,
                    str(event.get("reason") or ""),
                    usage if isinstance(usage, dict) else None,
                    model if isinstance(model, str) else "",
                )
        raise DependencyUnavailable("openai", "no session.closed in time", 2)

    def charge_final(self, call_id: CallId, user: UserId, closing: Closing) -> None:
        """The session's final usage, as its voice's running total (best effort: the watcher's
        meter, or a later close, may still report it; a failure is logged)."""
        price, _ = self._prices.for_live(closing.model)
        try:
            self._spend.charge_total(
                call_id=call_id,
                user=user,
                counter=VOICE_TOTAL,
                total_micros=live_usage_cost(closing.usage, price),
                deadline=Deadline(5.0),
            )
        except TokenVendorError as exc:
            self._log.error("final usage not recorded", extra={"error": str(exc)})
