"""Lambda capacity for the API, against the account's concurrency quota: the arithmetic the
preflight checks and docs/deploy.md ("Capacity") explains.

Every live server-owned call holds one execution of the call watcher for its whole length,
and two for a moment every WATCHER_MAX_SECONDS, when a watcher hands over to its successor
(the old one finishes within WATCHER_HANDOVER_SECONDS). Everything in an account draws on one
pool of concurrent executions (the quota); what a function reserves is kept for it and is its
cap, and Lambda always leaves at least 100 unreserved. Unbounded, watchers of a handful of
live calls can take a small account's whole pool, and every API request is then throttled.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.findings import Finding

MIN_UNRESERVED = 100  # Lambda keeps this much of the quota unreserved, always
COMFORTABLE_QUOTA = 1000  # the usual default; new accounts often start far lower
QUOTA_CODE = "L-B99A9384"  # Service Quotas: AWS Lambda, "Concurrent executions"


@dataclass(frozen=True)
class Capacity:
    quota: int  # the account's concurrent executions in this region
    unreserved: int  # what no function reserves now
    ours: int  # what this stack's two functions reserve now (given back by the deploy)
    token: int  # ReservedConcurrency: reserved for the token function (0: none)
    watchers: int  # WatcherReservedConcurrency: reserved for, and the cap of, watchers
    watcher_seconds: int = 840  # WATCHER_MAX_SECONDS: each watcher hands over this often
    handover_seconds: int = 30  # WATCHER_HANDOVER_SECONDS: the overlap of two watchers

    @property
    def unreserved_after(self) -> int:
        """What the account keeps unreserved once this deploy's reservations apply."""
        return self.unreserved + self.ours - self.token - self.watchers

    @property
    def calls_at_worst(self) -> int:
        """Live calls the watchers' cap holds even if every call hands over at once."""
        return self.watchers // 2

    @property
    def calls_typically(self) -> int:
        """Live calls it holds when hand-overs fall at random: each call needs one watcher,
        plus a second for handover_seconds in every watcher_seconds."""
        return int(
            self.watchers * self.watcher_seconds / (self.watcher_seconds + self.handover_seconds)
        )


def findings(c: Capacity) -> list[Finding]:
    found: list[Finding] = []
    others = c.quota - c.unreserved - c.ours  # reserved by the account's other functions
    if c.unreserved_after < MIN_UNRESERVED:
        needed = c.token + c.watchers + others + MIN_UNRESERVED
        found.append(
            Finding(
                "blocker",
                "concurrency",
                f"reserving {c.token} (token function) + {c.watchers} (watchers) leaves "
                f"{c.unreserved_after} of the quota of {c.quota} unreserved"
                + (f" ({others} reserved by other functions)" if others else "")
                + f"; Lambda keeps at least {MIN_UNRESERVED}",
                f"ask for a quota of at least {needed} (Service Quotas, Lambda, {QUOTA_CODE}), "
                "or lower WatcherReservedConcurrency / ReservedConcurrency",
            )
        )
    elif c.watchers == 0:
        found.append(
            Finding(
                "warning",
                "concurrency",
                "watchers are unbounded (WatcherReservedConcurrency=0): each live call holds "
                f"one execution, and {c.unreserved_after // 2} live calls handing over at once "
                "would take the whole unreserved pool"
                + ("" if c.token else ", the token function's too"),
                "set WatcherReservedConcurrency (docs/deploy.md, Capacity)",
            )
        )
    else:
        found.append(
            Finding(
                "ok",
                "concurrency",
                f"{c.watchers} reserved for watchers: {c.calls_at_worst} live calls even if "
                f"all hand over at once, about {c.calls_typically} typically; the API keeps "
                + (
                    f"its own {c.token}"
                    if c.token
                    else f"the {c.unreserved_after} unreserved (shared with other functions)"
                ),
            )
        )
    if c.quota < COMFORTABLE_QUOTA:
        found.append(
            Finding(
                "warning",
                "quota",
                f"the account's concurrency quota here is {c.quota} (new accounts often start "
                f"below {COMFORTABLE_QUOTA})",
                f"ask for {COMFORTABLE_QUOTA} (Service Quotas, Lambda, {QUOTA_CODE})",
            )
        )
    return found
