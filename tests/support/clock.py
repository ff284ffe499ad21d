"""The tests' clock, and an instant to start it at."""

from __future__ import annotations

START = 1_800_000_000.0  # a day boundary: 1_800_000_000 % 86400 == 57600; minute-aligned


class Clock:
    """A clock the test moves by hand: `clock.now += 60`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
