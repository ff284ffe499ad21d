"""The call watcher's settings (its own function, its own environment), read once per
container through the shared parser (`core.settings.Env`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core.pricing import DEFAULT_PRICES_FILE, PriceTable, load_prices
from ..core.settings import CoreSettings, Env


@dataclass(frozen=True)
class WatcherSettings:
    core: CoreSettings
    prices: PriceTable
    max_seconds: float  # how long one watcher watches before it hands over
    handover_seconds: float  # how long before that it starts its successor
    lease_seconds: float  # a holder that stops renewing loses the lease after this
    margin_seconds: float  # kept from Lambda's own limit, to close and log

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WatcherSettings:
        env = Env(environ)
        max_seconds = env.seconds("WATCHER_MAX_SECONDS", 840, 1, 900)
        handover = env.seconds("WATCHER_HANDOVER_SECONDS", 30, 0.1, 300)
        if handover >= max_seconds:
            env.problems.append("WATCHER_HANDOVER_SECONDS must be less than WATCHER_MAX_SECONDS")
        settings = cls(
            core=CoreSettings.read(env),
            prices=load_prices(
                Path(env.text("PRICES_FILE") or DEFAULT_PRICES_FILE),
                env.text("PRICES"),
                env.problems,
            ),
            max_seconds=max_seconds,
            handover_seconds=handover,
            lease_seconds=env.seconds("WATCHER_LEASE_SECONDS", 60, 1, 900),
            margin_seconds=env.seconds("WATCHER_MARGIN_SECONDS", 10, 0, 120),
        )
        env.check()
        return settings
