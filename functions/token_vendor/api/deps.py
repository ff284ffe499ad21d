"""The token function's composition root: real clients and adapters, built once per container.

Nothing here runs at import time; `build_container` runs on the first request (or before a
SnapStart snapshot) and the handler keeps the result for the container's life. What only the
calls routes use (the call ledger, the Scheduler and Lambda clients, the calls modules) is
built at their first request: a mint never needs it, and a cold mint would pay for it
(docs/performance.md). `Container.complete` builds it all at once, before a snapshot.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from ..core import aws
from ..core.controls import ControlReader
from ..core.openai_key import OpenAIKeyStore
from ..core.spend import SpendLedger
from .auth import Caller, JwtVerifier
from .budget import Budget
from .door import Door, FrontDoor, OpenDoor
from .jwks import JwksKeySource
from .mint import TokenVendor
from .plans import Plan
from .quota import QuotaStore, RouteQuotas
from .realtime import RealtimeApi
from .settings import ApiSettings

if TYPE_CHECKING:
    from .calls import CallService


@dataclass(frozen=True)
class Container:
    """Everything built once per container: the settings, the use cases and their caches."""

    settings: ApiSettings
    vendor: TokenVendor
    jwks: JwksKeySource
    openai_key: OpenAIKeyStore
    build_calls: Callable[[], CallService]
    door: Door
    route_quotas: RouteQuotas
    vendors: dict[str, TokenVendor] = field(default_factory=dict)  # by plan
    build_plan_calls: Callable[[str], CallService] | None = None

    @functools.cached_property
    def calls(self) -> CallService:
        """The calls routes' use case (the default plan's), built at their first request."""
        return self.build_calls()

    @functools.cached_property
    def _plan_calls(self) -> dict[str, CallService]:
        return {}

    def plan_of(self, caller: Caller) -> Plan:
        return self.settings.plan_book.resolve(caller.claims)

    def vendor_for(self, plan: Plan) -> TokenVendor:
        return self.vendors.get(plan.name, self.vendor)

    def calls_for(self, plan: Plan) -> CallService:
        """The calls use case under `plan`'s limits, built at its first request."""
        if self.build_plan_calls is None or plan.name == self.settings.plan_book.default:
            return self.calls
        if plan.name not in self._plan_calls:
            self._plan_calls[plan.name] = self.build_plan_calls(plan.name)
        return self._plan_calls[plan.name]

    def complete(self) -> Container:
        """Builds now what is otherwise built at first use (before a SnapStart snapshot, so a
        restored function pays for nothing); no network call."""
        self.calls  # noqa: B018  (the cached property builds it)
        for name in self.vendors:
            if self.build_plan_calls is not None:
                self.calls_for(self.settings.plan_book.by_name[name])
        return self

    def forget_cached_secrets(self) -> None:
        """After a SnapStart restore: the snapshot's keys and secret may be stale."""
        self.jwks.invalidate()
        self.openai_key.invalidate()
        self.door.invalidate()


def build_container(
    env: Mapping[str, str] | None = None,
    *,
    http: httpx.Client | None = None,
    dynamodb: Any = None,
    secretsmanager: Any = None,
    scheduler: Any = None,
    lambda_client: Any = None,
    log: Any = None,
) -> Container:
    """Every dependency is injectable; the defaults are the production ones."""
    env = os.environ if env is None else env
    settings = ApiSettings.from_env(env)
    core = settings.core
    aws.quiet_library_loggers()
    dynamodb = dynamodb or aws.client("dynamodb", env, aws.DYNAMODB)
    secretsmanager = secretsmanager or aws.client("secretsmanager", env, aws.SECRETS)
    # One HTTP client for the key set and OpenAI: one TLS context, kept-alive connections.
    http = http or httpx.Client(
        timeout=httpx.Timeout(8.0, connect=2.0),
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=4, keepalive_expiry=60),
        follow_redirects=False,
    )
    jwks = JwksKeySource(
        http=http,
        issuer=settings.auth_issuer,
        algorithms=settings.auth_algorithms,
        jwks_url=settings.auth_jwks_url,
    )
    verifier = JwtVerifier(
        issuer=settings.auth_issuer,
        audiences=settings.auth_audiences,
        algorithms=settings.auth_algorithms,
        keys=jwks,
        required_scopes=settings.auth_required_scopes,
        token_use=settings.auth_token_use,
        required_typ=settings.auth_required_typ,
        leeway=settings.auth_leeway_seconds,
        max_lifetime=settings.auth_max_token_lifetime,
    )
    for warning in settings.warnings():
        (log or logging.getLogger(__name__)).warning(warning)
    # Threads start lazily: the spend read beside an admission, a call's schedule and watcher
    # start beside the ledger's record.
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="beside")
    openai_key = OpenAIKeyStore(core.openai_secret_id, secretsmanager)
    realtime = RealtimeApi(core.openai_base_url, http, openai_key)
    plans = settings.plan_book
    controls = ControlReader(core.table, dynamodb) if settings.user_controls else None
    # One set of stores per plan (its limits), all over the one client: a handful of plans.
    budgets = {
        name: Budget(
            SpendLedger(core.table, plan.spend_limits, dynamodb),
            settings.prices,
            executor,
            controls,
        )
        for name, plan in plans.by_name.items()
    }
    quotas = {
        name: QuotaStore(core.table, plan.quotas, dynamodb, global_windows=settings.global_quotas)
        for name, plan in plans.by_name.items()
    }
    vendors = {
        name: TokenVendor(
            verifier=verifier,
            profiles=settings.profiles,
            quota=quotas[name],
            minter=realtime,
            webrtc_url=settings.webrtc_url,
            budget=budgets[name],
            log=log,
            plan=plan,
        )
        for name, plan in plans.by_name.items()
    }

    @functools.cache
    def shared_calls() -> dict[str, Any]:
        """What every plan's calls share: built once, at the calls routes' first request."""
        from ..core.lease import LeaseStore
        from .live import LiveApi
        from .placement import Terms
        from .schedule import HangupScheduler
        from .starter import LiveCloser, WatcherStarter

        watchers, closer = None, None
        if settings.watcher_function:  # each admitted call gets a watcher
            client = lambda_client or aws.client("lambda", env, aws.LAMBDA)
            watchers = WatcherStarter(client, settings.watcher_function, log)
            sync = lambda_client or aws.client("lambda", env, aws.LAMBDA_SYNC)
            closer = LiveCloser(sync, settings.watcher_function)
        return {
            "realtime": realtime,
            "scheduler": HangupScheduler(
                scheduler or aws.client("scheduler", env, aws.SCHEDULER),
                settings.schedule_group,
                settings.scheduler_role_arn,
                settings.hangup_failures_queue or None,
            ),
            "executor": executor,
            # GPT-Live sessions need the watcher's function: only it can close one.
            "live": LiveApi(core.openai_base_url, http, openai_key) if closer else None,
            "live_closer": closer,
            "terms": Terms(
                precision=settings.scheduler_precision_seconds,
                attach_seconds=core.attach_seconds,
                answer_wait=settings.watcher_answer_wait,
                end_unwatched=core.end_unwatched,
            ),
            "log": log,
            "watchers": watchers,
            "leases": LeaseStore(core.table, dynamodb),
        }

    def build_plan_calls(name: str) -> CallService:
        # Imported here, at the calls routes' first request: a mint never runs them.
        from ..core.ledger import CallLedger
        from .calls import CallService

        plan = plans.by_name[name]
        return CallService(
            profiles=settings.profiles,
            quota=quotas[name],
            ledger=CallLedger(core.table, plan.call_limits, dynamodb),
            budget=budgets[name],
            plan=plan,
            plan_budget=bool(plans.claim),
            **shared_calls(),
        )

    def build_calls() -> CallService:
        return build_plan_calls(plans.default)

    door: Door = (
        FrontDoor(settings.origin_secret_id, secretsmanager)
        if settings.origin_secret_id
        else OpenDoor()
    )
    return Container(
        settings=settings,
        vendor=vendors[plans.default],
        vendors=vendors,
        build_plan_calls=build_plan_calls,
        jwks=jwks,
        openai_key=openai_key,
        build_calls=build_calls,
        door=door,
        route_quotas=RouteQuotas(core.table, settings.route_quotas, dynamodb),
    )
