"""The time a request may still spend, so every call and retry fits inside the Lambda timeout."""

from __future__ import annotations

import time
from collections.abc import Callable


class Deadline:
    """A point in monotonic time; adapters ask it for timeouts and whether a retry still fits."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + seconds

    @classmethod
    def from_lambda_context(
        cls, context: object, margin: float = 0.5, default: float = 9.0
    ) -> Deadline:
        # Keep a margin to write the response and flush logs and metrics before Lambda cuts us off.
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        seconds = remaining_ms() / 1000.0 if callable(remaining_ms) else default
        return cls(max(seconds - margin, 0.0))

    def remaining(self) -> float:
        return max(self._end - self._clock(), 0.0)

    def allows(self, seconds: float) -> bool:
        return self.remaining() >= seconds

    def cap(self, seconds: float) -> float:
        """The smaller of `seconds` and what is left (never below a token amount)."""
        return max(min(seconds, self.remaining()), 0.01)

    def shortened(self, seconds: float) -> Deadline:
        """A deadline `seconds` earlier: time kept back for what must follow."""
        return Deadline(max(self.remaining() - seconds, 0.0), self._clock)
