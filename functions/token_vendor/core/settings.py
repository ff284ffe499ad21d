"""The one environment parser both functions' settings models are built on.

Each function has its own model (`api.settings.ApiSettings`, `watcher.settings.
WatcherSettings`), parsed once per container. Both read through `Env`, which collects every
problem instead of stopping at the first, so a bad deploy fails its cold start with one
message naming every variable at fault. `CoreSettings` holds what both functions read the
same way (the OpenAI key's secret, OpenAI's base URL, the table, the call and spend limits);
each model keeps it as its `core`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConfigError
from .spend import SpendLimits

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_CALL_LIMITS = "concurrent=2,minutes/day=60"
MAX_CONCURRENT_CALLS = 10
_CALL_LIMIT = re.compile(r"^\s*(concurrent|minutes/day)\s*=\s*(\d+)\s*$")
# Loopback and the host that containers (sam local) use to reach the developer's machine.
PLAIN_HTTP_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "host.docker.internal"})


class Env:
    """The environment, read variable by variable; every problem is kept for `check`."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if env is None else env
        self.problems: list[str] = []

    def text(self, name: str, default: str = "") -> str:
        return self._env.get(name, "").strip() or default

    def required(self, name: str, what: str = "") -> str:
        value = self.text(name)
        if not value:
            self.problems.append(f"{name} is required{what}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if not raw:
            return default
        if not raw.isdigit() or not low <= int(raw) <= high:
            self.problems.append(f"{name} must be a whole number from {low} to {high}, got {raw!r}")
            return default
        return int(raw)

    def seconds(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:  # also refuses nan
            self.problems.append(f"{name} must be a number of seconds from {low:g} to {high:g}")
            return default
        return value

    def url(self, name: str, default: str = "") -> str:
        """An https:// URL (plain http only for loopback), exactly as given."""
        value = self.text(name, default)
        if value:
            check_url(name, value, self.problems)
        return value

    def check(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


def check_url(name: str, url: str, problems: list[str]) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in PLAIN_HTTP_HOSTS:
        return
    problems.append(f"{name} must be an https:// URL (plain http only for loopback), got {url!r}")


def split(raw: str, sep: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(sep) if part.strip())


@dataclass(frozen=True)
class CallLimits:
    """Per user: live calls at once, and call seconds that may be reserved per UTC day."""

    concurrent: int
    seconds_per_day: int

    @classmethod
    def parse(cls, raw: str, problems: list[str]) -> CallLimits:
        values: dict[str, int] = {}
        for part in raw.split(","):
            match = _CALL_LIMIT.match(part)
            if not match or int(match.group(2)) < 1 or match.group(1) in values:
                problems.append(
                    "CALL_LIMITS: expected 'concurrent=N,minutes/day=M' (each once, at least 1), "
                    f"got {part.strip()!r}"
                )
                continue
            values[match.group(1)] = int(match.group(2))
        if values.get("concurrent", 2) > MAX_CONCURRENT_CALLS:
            problems.append(f"CALL_LIMITS: concurrent may be at most {MAX_CONCURRENT_CALLS}")
        return cls(values.get("concurrent", 2), values.get("minutes/day", 60) * 60)


@dataclass(frozen=True)
class CoreSettings:
    """What both functions read, the same way."""

    openai_secret_id: str
    openai_base_url: str
    table: str
    call_limits: CallLimits
    spend_limits: SpendLimits
    # UNWATCHED_CALLS: "end" (the default: a call no watcher holds is ended, fail closed) or
    # "allow" (it runs on to its deadline, unmetered and unguarded: counted and alarmed).
    end_unwatched: bool = True
    # WATCHER_ATTACH_SECONDS: how long a call's watcher may take to attach before the call
    # counts as unwatched (the watcher's own window; the API's backstop comes after it).
    attach_seconds: float = 30.0

    @classmethod
    def read(cls, env: Env) -> CoreSettings:
        unwatched = env.text("UNWATCHED_CALLS", "end")
        if unwatched not in ("end", "allow"):
            env.problems.append(f"UNWATCHED_CALLS must be 'end' or 'allow', got {unwatched!r}")
        return cls(
            openai_secret_id=env.required("OPENAI_SECRET_ID"),
            openai_base_url=env.url("OPENAI_BASE_URL", DEFAULT_OPENAI_BASE_URL).rstrip("/"),
            table=env.required("QUOTA_TABLE"),
            call_limits=CallLimits.parse(
                env.text("CALL_LIMITS", DEFAULT_CALL_LIMITS), env.problems
            ),
            spend_limits=SpendLimits.parse(env.text("SPEND_LIMITS"), env.problems),
            end_unwatched=unwatched != "allow",
            attach_seconds=env.seconds("WATCHER_ATTACH_SECONDS", 30, 1, 300),
        )
