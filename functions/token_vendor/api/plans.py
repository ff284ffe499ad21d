"""Plans: which limits and profiles a caller gets, from a claim of their access token.

A plans file (PLANS_FILE) names each plan's mint quotas, call limits, spend budget and the
profiles it may use; whatever a plan leaves out is the deploy's own (QUOTAS, CALL_LIMITS,
SPEND_LIMITS, every profile). PLAN_CLAIM names the claim that says a caller's plan:

- a list of strings: Cognito's `cognito:groups`, Okta's `groups`, an Auth0 namespaced roles
  claim (`https://example.com/roles`);
- a string: a custom claim such as `plan`;
- `scope` (or `scp`): the token's scopes, space separated.

Each plan matches the claim's values listed in its `match` (its own name when it has none).
When the claim names several plans, the first in the file wins (list the generous ones
first); a caller whose claim names none (or who has no such claim) gets DEFAULT_PLAN. The
plan is read from each request's token: a plan changed at the identity provider takes effect
with the user's next token. Without a plans file everyone is on one plan, `default`, the
deploy's own limits.

An operator's override (core.controls) replaces one limit of one user's plan until it expires.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..core.controls import Controls
from ..core.settings import CallLimits
from ..core.spend import SpendLimits
from .windows import QuotaWindow, parse_quotas

DEFAULT = "default"
HERE = Path(__file__).parent  # where a relative PLANS_FILE is found (`plans.json`)
_FIELDS = {"match", "quotas", "call_limits", "spend_limits", "profiles", "title"}
_SCOPE_CLAIMS = ("scope", "scp")


@dataclass(frozen=True)
class Plan:
    name: str
    quotas: tuple[QuotaWindow, ...]
    call_limits: CallLimits
    spend_limits: SpendLimits
    profiles: frozenset[str] | None = None  # None: every profile
    match: frozenset[str] = frozenset()
    title: str = ""  # what the page shows ("Free", "Pro"); the name when empty

    def allows(self, profile: str) -> bool:
        return self.profiles is None or profile in self.profiles

    def with_controls(self, controls: Controls, now: float) -> Plan:
        """This plan with the user's overrides in force at `now` (each replaces its limit;
        a spend override replaces the per-user budget, never the service's)."""
        problems: list[str] = []
        changed = self
        if (raw := controls.override("quotas", now)) is not None:
            windows = parse_quotas(raw, problems, "override quotas")
            if not problems:
                changed = replace(changed, quotas=windows)
        if (raw := controls.override("call_limits", now)) is not None:
            limits = CallLimits.parse(raw, problems)
            if not problems:
                changed = replace(changed, call_limits=limits)
        if (raw := controls.override("spend_limits", now)) is not None:
            spend = SpendLimits.parse(raw, problems)
            if not problems and spend.user_micros is not None:
                changed = replace(
                    changed,
                    spend_limits=replace(changed.spend_limits, user_micros=spend.user_micros),
                )
        return changed


@dataclass(frozen=True)
class Plans:
    claim: str  # the token's claim naming the plan ("" without a plans file)
    default: str
    by_name: dict[str, Plan]  # in the file's order: the first a claim names wins

    def resolve(self, claims: Mapping[str, Any]) -> Plan:
        values = claim_values(claims, self.claim) if self.claim else frozenset()
        for plan in self.by_name.values():
            if plan.match & values:
                return plan
        return self.by_name[self.default]


def claim_values(claims: Mapping[str, Any], name: str) -> frozenset[str]:
    """What a claim says, as a set of strings: a string claim is one value (a scope claim is
    space separated), a list its strings; anything else says nothing."""
    value = claims.get(name)
    if isinstance(value, str):
        if name in _SCOPE_CLAIMS:
            return frozenset(part for part in value.split(" ") if part)
        return frozenset({value})
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def single_plan(quotas: tuple[QuotaWindow, ...], calls: CallLimits, spend: SpendLimits) -> Plans:
    return Plans("", DEFAULT, {DEFAULT: Plan(DEFAULT, quotas, calls, spend)})


def load_plans(
    path: str,
    claim: str,
    default: str,
    base: Plan,
    profiles: set[str],
    problems: list[str],
) -> Plans:
    """The plans file at `path` (none: one plan, the deploy's own limits), every problem
    appended naming the plan and field. `base` gives what a plan leaves out."""
    if not path:
        if claim:
            problems.append("PLAN_CLAIM is set but PLANS_FILE is not")
        return Plans("", DEFAULT, {DEFAULT: replace(base, name=DEFAULT)})
    where = f"PLANS_FILE ({path})"
    file = Path(path)
    if not file.is_absolute():  # a name beside profiles.json, as the function ships them
        file = HERE / file
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{where}: cannot be read as JSON: {exc}")
        return single_plan(base.quotas, base.call_limits, base.spend_limits)
    entries = raw.get("plans") if isinstance(raw, dict) else None
    if not isinstance(entries, dict) or not entries:
        problems.append(f'{where}: expected {{"plans": {{"<name>": {{...}}}}}}')
        return single_plan(base.quotas, base.call_limits, base.spend_limits)
    if not claim:
        problems.append("PLAN_CLAIM is required with PLANS_FILE (the claim naming the plan)")
    by_name = {
        name: _plan(name, entry, base, profiles, problems, where) for name, entry in entries.items()
    }
    default = default or DEFAULT
    if default not in by_name:
        problems.append(f"DEFAULT_PLAN: no plan named {default!r} in {where}")
        by_name[default] = replace(base, name=default)
    return Plans(claim, default, by_name)


def _plan(
    name: str,
    entry: Any,
    base: Plan,
    profiles: set[str],
    problems: list[str],
    where: str,
) -> Plan:
    at = f"{where}: plan '{name}'"
    if not isinstance(entry, dict):
        problems.append(f"{at}: expected an object")
        return replace(base, name=name, match=frozenset({name}))
    for unknown in sorted(set(entry) - _FIELDS):
        problems.append(f"{at}: unknown field '{unknown}'")
    plan = replace(base, name=name, match=frozenset({name}), title=str(entry.get("title", "")))
    if "match" in entry:
        match = entry["match"]
        if not isinstance(match, list) or not all(isinstance(m, str) and m for m in match):
            problems.append(f"{at}: 'match' must be a list of claim values")
        else:
            plan = replace(plan, match=frozenset(match))
    for field_name in ("quotas", "call_limits", "spend_limits"):
        if field_name in entry and not isinstance(entry[field_name], str):
            problems.append(f"{at}: '{field_name}' must be a string like its variable's")
    if isinstance(entry.get("quotas"), str):
        plan = replace(plan, quotas=parse_quotas(entry["quotas"], problems, f"{at} quotas"))
    if isinstance(entry.get("call_limits"), str):
        found: list[str] = []
        plan = replace(plan, call_limits=CallLimits.parse(entry["call_limits"], found))
        problems.extend(f"{at}: {p}" for p in found)
    if isinstance(entry.get("spend_limits"), str):
        found = []
        spend = SpendLimits.parse(entry["spend_limits"], found)
        problems.extend(f"{at}: {p}" for p in found)
        if spend.global_micros is not None or spend.floor_micros is not None:
            problems.append(f"{at}: 'spend_limits' sets only the per-user budget (usd/day=...)")
        plan = replace(plan, spend_limits=replace(base.spend_limits, user_micros=spend.user_micros))
    if "profiles" in entry:
        listed = entry["profiles"]
        if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
            problems.append(f"{at}: 'profiles' must be a list of profile names")
        else:
            for unknown in sorted(set(listed) - profiles):
                problems.append(f"{at}: no profile named '{unknown}'")
            plan = replace(plan, profiles=frozenset(listed))
    return plan
