"""Quota windows (`QUOTAS`, `GLOBAL_QUOTAS`, `CALL_ROUTE_QUOTAS`, a plan's `quotas`, a user's
override): one parser, so every place a window is written reads it the same way."""

from __future__ import annotations

import re
from dataclasses import dataclass

WINDOW_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
# Fixed windows aligned on the epoch nest inside each other, so one item can hold them all.
_QUOTA = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day|week)\s*$")


@dataclass(frozen=True)
class QuotaWindow:
    """One fixed quota window: at most `limit` mints per `seconds`, aligned on the epoch."""

    name: str
    seconds: int
    limit: int


def parse_quotas(
    raw: str, problems: list[str], variable: str = "QUOTAS"
) -> tuple[QuotaWindow, ...]:
    windows: dict[str, QuotaWindow] = {}
    for part in raw.split(","):
        match = _QUOTA.match(part)
        if not match or int(match.group(1)) < 1:
            problems.append(
                f"{variable}: expected entries like '10/minute,100/day', got {part.strip()!r}"
            )
            continue
        name = match.group(2)
        if name in windows:
            problems.append(f"{variable}: the window '{name}' is given twice")
        windows[name] = QuotaWindow(name, WINDOW_SECONDS[name], int(match.group(1)))
    return tuple(sorted(windows.values(), key=lambda w: w.seconds))
