"""The one configuration model: parsed once per container from the Lambda environment.

Every problem is reported at once, each naming the variable (or profile field) at fault, so a
bad deploy fails its cold start with a message an operator can act on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError
from .policy import Profiles, load_profiles
from .pricing import DEFAULT_PRICES_FILE, PriceTable, load_prices
from .spend import SpendLimits

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_PROFILES_FILE = Path(__file__).with_name("profiles.json")
WINDOW_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
# Fixed windows aligned on the epoch nest inside each other, so one item can hold them all.
DEFAULT_CALL_LIMITS = "concurrent=2,minutes/day=60"
_CALL_LIMIT = re.compile(r"^\s*(concurrent|minutes/day)\s*=\s*(\d+)\s*$")
_SCHEDULE_GROUP = re.compile(r"^[0-9a-zA-Z._-]{1,64}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_QUOTA = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day|week)\s*$")
_ASYMMETRIC_FAMILIES = {
    "RSA": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
    "EC": {"ES256", "ES384", "ES512"},
    "OKP": {"EdDSA"},
}
# Loopback and the host that containers (sam local) use to reach the developer's machine.
_PLAIN_HTTP_HOSTS = {"localhost", "127.0.0.1", "::1", "host.docker.internal"}


@dataclass(frozen=True)
class QuotaWindow:
    """One fixed quota window: at most `limit` mints per `seconds`, aligned on the epoch."""

    name: str
    seconds: int
    limit: int


@dataclass(frozen=True)
class CallLimits:
    """Per user: live calls at once, and call seconds that may be reserved per UTC day."""

    concurrent: int
    seconds_per_day: int


@dataclass(frozen=True)
class Settings:
    """The function's whole configuration, read from the environment once per container."""

    openai_secret_id: str
    openai_base_url: str
    quota_table: str
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
    call_limits: CallLimits = CallLimits(2, 3600)
    schedule_group: str = ""
    scheduler_role_arn: str = ""
    scheduler_precision_seconds: int = 60
    spend_limits: SpendLimits = field(default_factory=SpendLimits)
    # CallWatcherFunction's name or ARN: each admitted call gets a watcher (none when empty).
    watcher_function: str = ""

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

    @property
    def webrtc_url(self) -> str:
        return f"{self.openai_base_url}/realtime/calls"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        problems: list[str] = []

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                problems.append(f"{name} is required")
            return value

        def integer(name: str, default: int, low: int, high: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or not low <= int(raw) <= high:
                problems.append(f"{name} must be a whole number from {low} to {high}, got {raw!r}")
                return default
            return int(raw)

        base_url = env.get("OPENAI_BASE_URL", "").strip() or DEFAULT_OPENAI_BASE_URL
        _check_url("OPENAI_BASE_URL", base_url, problems)
        issuer = required("AUTH_ISSUER")
        if issuer:
            _check_url("AUTH_ISSUER", issuer, problems)
        jwks_url = env.get("AUTH_JWKS_URL", "").strip() or None
        if jwks_url:
            _check_url("AUTH_JWKS_URL", jwks_url, problems)
        audiences = _split(env.get("AUTH_AUDIENCE", ""), ",")
        if not audiences:
            problems.append("AUTH_AUDIENCE is required (one or more audiences, comma separated)")
        profiles_path = Path(env.get("PROFILES_FILE", "").strip() or DEFAULT_PROFILES_FILE)

        settings = cls(
            openai_secret_id=required("OPENAI_SECRET_ID"),
            openai_base_url=base_url.rstrip("/"),
            quota_table=required("QUOTA_TABLE"),
            quotas=_parse_quotas(env.get("QUOTAS", "").strip() or "10/minute,100/day", problems),
            # Every user together; empty means no global cap (per-user quotas only).
            global_quotas=_parse_quotas(global_quotas, problems, "GLOBAL_QUOTAS")
            if (global_quotas := env.get("GLOBAL_QUOTAS", "").strip())
            else (),
            auth_issuer=issuer,
            auth_audiences=audiences,
            auth_jwks_url=jwks_url,
            auth_algorithms=_parse_algorithms(env.get("AUTH_ALGORITHMS", ""), problems),
            auth_required_scopes=_split(env.get("AUTH_REQUIRED_SCOPES", ""), " "),
            auth_token_use=env.get("AUTH_TOKEN_USE", "").strip() or None,
            auth_required_typ=env.get("AUTH_REQUIRED_TYP", "").strip() or None,
            auth_leeway_seconds=integer("AUTH_LEEWAY_SECONDS", 30, 0, 300),
            auth_max_token_lifetime=integer("AUTH_MAX_TOKEN_LIFETIME", 86400, 60, 31 * 86400),
            allowed_origins=_parse_origins(env.get("ALLOWED_ORIGINS", ""), problems),
            profiles=load_profiles(profiles_path, problems),
            call_limits=_parse_call_limits(
                env.get("CALL_LIMITS", "").strip() or DEFAULT_CALL_LIMITS, problems
            ),
            schedule_group=env.get("SCHEDULE_GROUP", "").strip(),
            scheduler_role_arn=env.get("SCHEDULER_ROLE_ARN", "").strip(),
            # EventBridge Scheduler fires an at() schedule somewhere in its minute; a local
            # runner that fires to the second may say 1 (see docs/design.md, "deadlines").
            scheduler_precision_seconds=integer("SCHEDULER_PRECISION_SECONDS", 60, 1, 60),
            spend_limits=SpendLimits.parse(env.get("SPEND_LIMITS", ""), problems),
            watcher_function=env.get("WATCHER_FUNCTION_NAME", "").strip(),
        )
        _check_calls(settings, problems)
        if problems:
            raise ConfigError(problems)
        return settings


def _split(raw: str, sep: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(sep) if part.strip())


def _check_url(name: str, url: str, problems: list[str]) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in _PLAIN_HTTP_HOSTS:
        return
    problems.append(f"{name} must be an https:// URL (plain http only for loopback), got {url!r}")


def _parse_quotas(
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


def _parse_call_limits(raw: str, problems: list[str]) -> CallLimits:
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
    if values.get("concurrent", 2) > 10:
        problems.append("CALL_LIMITS: concurrent may be at most 10")
    return CallLimits(values.get("concurrent", 2), values.get("minutes/day", 60) * 60)


def _check_calls(settings: Settings, problems: list[str]) -> None:
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
    algorithms = _split(raw, ",") or ("RS256",)
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
    origins = _split(raw, ",")
    for origin in origins:
        parts = urlsplit(origin)
        exact = f"{parts.scheme}://{parts.netloc}" == origin and parts.hostname
        secure = parts.scheme == "https" or (
            parts.scheme == "http" and parts.hostname in _PLAIN_HTTP_HOSTS
        )
        if not exact or not secure:
            problems.append(
                f"ALLOWED_ORIGINS: {origin!r} is not an exact https:// origin "
                "(scheme://host[:port], no path, no wildcard)"
            )
    return origins


@dataclass(frozen=True)
class WatcherSettings:
    """The call watcher's settings (its own function, its own environment)."""

    openai_secret_id: str
    openai_base_url: str
    table: str
    call_limits: CallLimits  # to settle a call in the call ledger
    spend_limits: SpendLimits
    prices: PriceTable
    max_seconds: float  # how long one watcher watches before it hands over
    handover_seconds: float  # how long before that it starts its successor
    lease_seconds: float  # a holder that stops renewing loses the lease after this
    margin_seconds: float  # kept from Lambda's own limit, to close and log

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WatcherSettings:
        env = os.environ if env is None else env
        problems: list[str] = []

        def seconds(name: str, default: float, low: float, high: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                value = float("nan")
            if not low <= value <= high:  # also refuses nan
                problems.append(f"{name} must be a number of seconds from {low:g} to {high:g}")
                return default
            return value

        base_url = env.get("OPENAI_BASE_URL", "").strip() or DEFAULT_OPENAI_BASE_URL
        _check_url("OPENAI_BASE_URL", base_url, problems)
        secret_id = env.get("OPENAI_SECRET_ID", "").strip()
        if not secret_id:
            problems.append("OPENAI_SECRET_ID is required")
        table = env.get("QUOTA_TABLE", "").strip()
        if not table:
            problems.append("QUOTA_TABLE is required")
        max_seconds = seconds("WATCHER_MAX_SECONDS", 840, 1, 900)
        handover = seconds("WATCHER_HANDOVER_SECONDS", 30, 0.1, 300)
        if handover >= max_seconds:
            problems.append("WATCHER_HANDOVER_SECONDS must be less than WATCHER_MAX_SECONDS")
        settings = cls(
            openai_secret_id=secret_id,
            openai_base_url=base_url.rstrip("/"),
            table=table,
            call_limits=_parse_call_limits(
                env.get("CALL_LIMITS", "").strip() or DEFAULT_CALL_LIMITS, problems
            ),
            spend_limits=SpendLimits.parse(env.get("SPEND_LIMITS", ""), problems),
            prices=load_prices(
                Path(env.get("PRICES_FILE", "").strip() or DEFAULT_PRICES_FILE),
                env.get("PRICES", ""),
                problems,
            ),
            max_seconds=max_seconds,
            handover_seconds=handover,
            lease_seconds=seconds("WATCHER_LEASE_SECONDS", 60, 1, 900),
            margin_seconds=seconds("WATCHER_MARGIN_SECONDS", 10, 0, 120),
        )
        if problems:
            raise ConfigError(problems)
        return settings
