"""The tests' clock, and an instant to start it at."""

from __future__ import annotations

import time

START = 1_800_000_000.0  # a day boundary: 1_800_000_000 % 86400 == 57600; minute-aligned


class Clock:
    """A clock the test moves by hand: `clock.now += 60`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def clear_of_a_minute_boundary(needed: float) -> None:
    """Return with at least `needed` seconds of the wall clock's minute left, waiting for the
    next minute if need be: requests that count in a minute window by the real clock and must
    fall in one window (a limit reached, an exact `r=`) cannot straddle two."""
    left = 60 - time.time() % 60
    if left < needed:
        time.sleep(left + 0.2)
