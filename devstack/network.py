"""Network profiles: how far apart the parts of a deployment are, hop by hop.

A profile names four hops (docs/performance.md, "Under a network", gives each figure's
source): the browser to the API (the page's origin, or API Gateway's own in the
cross-origin setup), the function to AWS's services (DynamoDB, Secrets Manager, Lambda's
Invoke), the function to OpenAI, and the browser to OpenAI (its SDP POST in the
client-secret flow, and the call's media). `devstack.delay` applies them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

HOPS = ("browser_api", "function_aws", "function_openai", "browser_openai")
LOOPBACK = "loopback"
RTO_MIN_S = 0.2  # Linux's minimum retransmission timeout


@dataclass(frozen=True)
class Link:
    """One hop: its round trip, the spread of each one-way delay around half of it, the
    share of packets lost, and the round trips a new connection spends before its first
    request (TCP's handshake and TLS 1.3's: 2)."""

    rtt_ms: float
    jitter_ms: float = 0.0
    loss: float = 0.0
    handshake_rtts: int = 2

    def __post_init__(self) -> None:
        if self.rtt_ms < 0 or self.jitter_ms < 0 or not 0 <= self.loss < 1:
            raise ValueError(f"a link needs rtt, jitter >= 0 and 0 <= loss < 1: {self}")

    def sample_one_way_s(self, rng: random.Random) -> float:
        """Half the round trip, give or take the jitter (uniform, never below zero)."""
        spread = rng.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0
        return max(0.0, self.rtt_ms / 2 + spread) / 1000

    @property
    def handshake_s(self) -> float:
        return self.handshake_rtts * self.rtt_ms / 1000

    @property
    def rto_s(self) -> float:
        """What a lost TCP segment costs: the retransmission timeout (RFC 6298's
        SRTT + 4 RTTVAR, at least Linux's 200 ms)."""
        return max(RTO_MIN_S, (self.rtt_ms + 4 * self.jitter_ms) / 1000)

    def __str__(self) -> str:
        text = f"RTT {self.rtt_ms:g} ms"
        if self.jitter_ms:
            text += f" ±{self.jitter_ms:g} ms"
        if self.loss:
            text += f", {self.loss:.1%} loss"
        return text


@dataclass(frozen=True)
class Profile:
    name: str
    summary: str
    browser_api: Link
    function_aws: Link
    function_openai: Link
    browser_openai: Link

    def link(self, hop: str) -> Link:
        if hop not in HOPS:
            raise ValueError(f"unknown hop {hop!r}: one of {', '.join(HOPS)}")
        link: Link = getattr(self, hop)
        return link

    def describe(self) -> str:
        return "; ".join(f"{hop.replace('_', ' -> ')} {self.link(hop)}" for hop in HOPS)


# The function's own hops are the same in every profile: it runs in one region, next to
# DynamoDB, and reaches OpenAI from there. The browser's hops are what change.
_IN_REGION = Link(2)
_TO_OPENAI = Link(20)
PROFILES = {
    p.name: p
    for p in (
        Profile(
            "same-region",
            "the user in the deployment's region, on a fixed line",
            browser_api=Link(20, 2),
            function_aws=_IN_REGION,
            function_openai=_TO_OPENAI,
            browser_openai=Link(20, 2),
        ),
        Profile(
            "other-continent",
            "the user an ocean away from the deployment's region (Europe to us-east-1)",
            browser_api=Link(90, 5),
            function_aws=_IN_REGION,
            function_openai=_TO_OPENAI,
            browser_openai=Link(90, 5),
        ),
        Profile(
            "mobile",
            "the user in the deployment's region on a 4G mobile network",
            browser_api=Link(70, 15, 0.01),
            function_aws=_IN_REGION,
            function_openai=_TO_OPENAI,
            browser_openai=Link(70, 15, 0.01),
        ),
    )
}


def profile_named(name: str) -> Profile:
    """A named profile; `ValueError` names the choices."""
    try:
        return PROFILES[name.strip().lower()]
    except KeyError:
        choices = ", ".join([LOOPBACK, *PROFILES])
        raise ValueError(f"unknown network profile {name!r}: one of {choices}") from None


def parse_network(text: str | None) -> Profile | None:
    """`NETWORK=...` as `make dev` takes it: empty or "loopback" is no profile at all."""
    if text is None or text.strip().lower() in ("", LOOPBACK):
        return None
    return profile_named(text)
