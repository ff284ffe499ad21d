"""The token function's settings: parsed once per container from the Lambda environment.

Read through the shared parser (`core.settings.Env`): every problem is reported at once, each
naming the variable (or profile field) at fault, so a bad deploy fails its cold start with a
message an operator can act on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from ..core.pricing import DEFAULT_PRICES_FILE, PriceTable, load_prices
from ..core.settings import PLAIN_HTTP_HOSTS, CoreSettings, Env, split
from .plans import Plan, Plans, load_plans, single_plan
from .profiles import Profiles, load_profiles
from .windows import QuotaWindow as QuotaWindow  # re-exported: the quota adapter's type
from .windows import parse_quotas

DEFAULT_PROFILES_FILE = Path(__file__).with_name("profiles.json")
# Listing calls and hanging up, per user and route: far above what the page does (one hangup
# per call, no polling), far below a loop.
DEFAULT_ROUTE_QUOTAS = "30/minute,1000/day"
_SCHEDULE_GROUP = re.compile(r"^[0-9a-zA-Z._-]{1,64}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_ASYMMETRIC_FAMILIES = {
    "RSA": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
    "EC": {"ES256", "ES384", "ES512"},
    "OKP": {"EdDSA"},
}


@dataclass(frozen=True)
class ApiSettings:
    """The token function's whole configuration, read from the environment once per container."""

    core: CoreSettings
    quotas: tuple[QuotaWindow, ...]
    global_quotas: tuple[QuotaWindow, ...]
    auth_issuer: str
    auth_audiences: tuple[str, ...]
    auth_jwks_url: str | None
    auth_algorithms: tuple[str, ...]
    auth_required_scopes: tuple[str, ...]
    auth_token_use: str | None
    auth_required_typ: str | None
    auth_leeway_seconds: int
    auth_max_token_lifetime: int
    allowed_origins: tuple[str, ...]
    profiles: Profiles
    prices: PriceTable  # for the budget's floor: one response like a profile's dearest
    schedule_group: str = ""
    scheduler_role_arn: str = ""
    scheduler_precision_seconds: int = 60
    # CallWatcherFunction's name or ARN: each admitted call gets a watcher (none when empty).
    watcher_function: str = ""
    # How long a call's answer waits for its watcher to hold the sideband (0: not at all).
    watcher_answer_wait: float = 3.0
    # The SQS queue a scheduled hangup or backstop goes to when it cannot be delivered.
    hangup_failures_queue: str = ""
    # The secret the page's distribution sends with every request (api/door.py); empty: no
    # distribution in front, the API's own URL is its door (ApiDoor=execute-api).
    origin_secret_id: str = ""
    # Per-user windows of the routes that are neither a mint nor a call placed (listing
    # calls, hanging up), each route counted apart.
    route_quotas: tuple[QuotaWindow, ...] = ()
    # Plans (PLANS_FILE, PLAN_CLAIM, DEFAULT_PLAN): without a file, one plan of the limits
    # above. `None` here means the same (settings built by hand in tests).
    plans: Plans | None = None
    # USER_CONTROLS=on (the default: a block must hold wherever the function runs): each
    # admission reads the user's controls (a block, overrides) beside its first write; off:
    # blocks and overrides set with `make ops` are not applied, said at every cold start.
    user_controls: bool = True

    @property
    def plan_book(self) -> Plans:
        if self.plans is not None:
            return self.plans
        return single_plan(self.quotas, self.core.call_limits, self.core.spend_limits)

    def calls_problems(self) -> list[str]:
        """What keeps server-owned calls from working (empty when they can)."""
        return [
            f"{name} is required for server-owned calls"
            for name, value in (
                ("SCHEDULE_GROUP", self.schedule_group),
                ("SCHEDULER_ROLE_ARN", self.scheduler_role_arn),
            )
            if not value
        ]

    def warnings(self) -> list[str]:
        """What works but spends money no budget sees, or cannot work in this deploy: said at
        every cold start."""
        found = []
        if not self.user_controls:
            found.append(
                "USER_CONTROLS is off: blocks and overrides set with `make ops` are not applied "
                "to new requests (a blocked user's live calls are still ended by the watcher)"
            )
        if self.core.spend_limits.any:
            found += [
                f"profile '{name}' serves client secrets to callers without a required scope: "
                "SPEND_LIMITS does not bound them (a secret's sessions are not metered; only "
                "QUOTAS bounds how many a user mints)"
                for name in self.profiles.reachable_secrets()
            ]
        if not self.watcher_function:
            found += [
                f"profile '{name}' serves GPT-Live sessions, which need the call watcher "
                "(WATCHER_FUNCTION_NAME): every create is refused as misconfigured"
                for name, profile in self.profiles.by_name.items()
                if profile.family == "live"
            ]
        return found

    @property
    def webrtc_url(self) -> str:
        return f"{self.core.openai_base_url}/realtime/calls"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        env = Env(environ)
        audiences = split(env.text("AUTH_AUDIENCE"), ",")
        if not audiences:
            env.problems.append(
                "AUTH_AUDIENCE is required (one or more audiences, comma separated)"
            )
        global_quotas = env.text("GLOBAL_QUOTAS")
        settings = cls(
            core=CoreSettings.read(env),
            quotas=parse_quotas(env.text("QUOTAS", "10/minute,100/day"), env.problems),
            # Every user together; empty means no global cap (per-user quotas only).
            global_quotas=parse_quotas(global_quotas, env.problems, "GLOBAL_QUOTAS")
            if global_quotas
            else (),
            auth_issuer=env.url("AUTH_ISSUER") or env.required("AUTH_ISSUER"),
            auth_audiences=audiences,
            auth_jwks_url=env.url("AUTH_JWKS_URL") or None,
            auth_algorithms=_parse_algorithms(env.text("AUTH_ALGORITHMS"), env.problems),
            auth_required_scopes=split(env.text("AUTH_REQUIRED_SCOPES"), " "),
            auth_token_use=env.text("AUTH_TOKEN_USE") or None,
            auth_required_typ=env.text("AUTH_REQUIRED_TYP") or None,
            auth_leeway_seconds=env.integer("AUTH_LEEWAY_SECONDS", 30, 0, 300),
            auth_max_token_lifetime=env.integer("AUTH_MAX_TOKEN_LIFETIME", 86400, 60, 31 * 86400),
            allowed_origins=_parse_origins(env.text("ALLOWED_ORIGINS"), env.problems),
            profiles=load_profiles(
                Path(env.text("PROFILES_FILE") or DEFAULT_PROFILES_FILE), env.problems
            ),
            prices=load_prices(
                Path(env.text("PRICES_FILE") or DEFAULT_PRICES_FILE),
                env.text("PRICES"),
                env.problems,
            ),
            schedule_group=env.text("SCHEDULE_GROUP"),
            scheduler_role_arn=env.text("SCHEDULER_ROLE_ARN"),
            # EventBridge Scheduler fires an at() schedule somewhere in its minute; a local
            # runner that fires to the second may say 1 (see docs/design.md, "deadlines").
            scheduler_precision_seconds=env.integer("SCHEDULER_PRECISION_SECONDS", 60, 1, 60),
            watcher_function=env.text("WATCHER_FUNCTION_NAME"),
            watcher_answer_wait=env.seconds("WATCHER_ANSWER_WAIT_SECONDS", 3, 0, 6),
            hangup_failures_queue=env.text("HANGUP_FAILURES_QUEUE_ARN"),
            origin_secret_id=env.text("ORIGIN_SECRET_ID"),
            route_quotas=parse_quotas(
                env.text("CALL_ROUTE_QUOTAS", DEFAULT_ROUTE_QUOTAS),
                env.problems,
                "CALL_ROUTE_QUOTAS",
            ),
        )
        base = Plan("default", settings.quotas, settings.core.call_limits,
                    settings.core.spend_limits)  # fmt: skip
        plans = load_plans(
            env.text("PLANS_FILE"),
            env.text("PLAN_CLAIM"),
            env.text("DEFAULT_PLAN"),
            base,
            set(settings.profiles.by_name),
            env.problems,
        )
        controls = env.text("USER_CONTROLS", "on")
        if controls not in ("on", "off"):
            env.problems.append(f"USER_CONTROLS must be 'on' or 'off', got {controls!r}")
        settings = replace(settings, plans=plans, user_controls=controls == "on")
        _check_calls(settings, env.problems)
        env.check()
        return settings


def _check_calls(settings: ApiSettings, problems: list[str]) -> None:
    """Server-owned calls need a schedule group and a role (without them the calls route
    answers 500 and client secrets keep working), and a deadline the Scheduler's precision
    can keep: the hangup fires in the unit before the promised end."""
    if settings.schedule_group and not _SCHEDULE_GROUP.match(settings.schedule_group):
        problems.append("SCHEDULE_GROUP must be a schedule group name ([0-9a-zA-Z._-], 1-64)")
    if settings.scheduler_role_arn and not _ROLE_ARN.match(settings.scheduler_role_arn):
        problems.append("SCHEDULER_ROLE_ARN must be an IAM role ARN")
    calls = [p for p in settings.profiles.by_name.values() if "calls" in p.flows]
    shortest = 2 * settings.scheduler_precision_seconds
    for profile in calls:
        if profile.max_call_seconds < shortest:
            problems.append(
                f"profile '{profile.name}': 'max_call_seconds' must be at least {shortest} "
                f"(twice SCHEDULER_PRECISION_SECONDS={settings.scheduler_precision_seconds})"
            )


def _parse_algorithms(raw: str, problems: list[str]) -> tuple[str, ...]:
    algorithms = split(raw, ",") or ("RS256",)
    families = {
        f for alg in algorithms for f, members in _ASYMMETRIC_FAMILIES.items() if alg in members
    }
    unknown = [a for a in algorithms if not any(a in m for m in _ASYMMETRIC_FAMILIES.values())]
    if unknown:
        # HS* and none are refused outright: a shared secret must never sit beside public keys.
        problems.append(f"AUTH_ALGORITHMS: only asymmetric algorithms are accepted, not {unknown}")
    elif len(families) > 1:
        problems.append(f"AUTH_ALGORITHMS: use one key family, not a mix of {sorted(families)}")
    return algorithms


def _parse_origins(raw: str, problems: list[str]) -> tuple[str, ...]:
    origins = split(raw, ",")
    for origin in origins:
        parts = urlsplit(origin)
        exact = f"{parts.scheme}://{parts.netloc}" == origin and parts.hostname
        secure = parts.scheme == "https" or (
            parts.scheme == "http" and parts.hostname in PLAIN_HTTP_HOSTS
        )
        if not exact or not secure:
            problems.append(
                f"ALLOWED_ORIGINS: {origin!r} is not an exact https:// origin "
                "(scheme://host[:port], no path, no wildcard)"
            )
    return origins
