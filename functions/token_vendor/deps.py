"""The composition root: real clients and adapters, built once per container.

Nothing here runs at import time; `build_container` runs on the first request (or before a
SnapStart snapshot) and the handler keeps the result for the container's life.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import botocore.session
import httpx
from botocore.config import Config

from .auth import JwtVerifier
from .calls import CallService
from .config import Settings
from .jwks import JwksKeySource
from .ledger import CallLedger
from .openai_client import RealtimeApi
from .openai_key import OpenAIKeyStore
from .quota import QuotaStore
from .schedule import HangupScheduler
from .service import TokenVendor
from .spend import SpendLedger
from .starter import WatcherStarter

# botocore at DEBUG logs response bodies, the secret string among them; httpx logs URLs;
# websockets logs the sideband's handshake (`Authorization: Bearer sk-...`) and its frames
# (instructions, what the caller said).
QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "httpx", "httpcore", "s3transfer", "websockets")

# Every call, retries included, fits in the ~10 s Lambda timeout (template.yaml).
DYNAMODB_CONFIG = Config(
    connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 3},
    tcp_keepalive=True,
)  # fmt: skip
SECRETS_CONFIG = Config(
    connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2}
)
# Lambda's async Invoke answers at once (202); one retry at most, inside the request's time.
LAMBDA_CONFIG = Config(
    connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2}
)
# CreateSchedule carries a ClientToken, so a retry of it stays one schedule.
SCHEDULER_CONFIG = Config(
    connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2},
    tcp_keepalive=True,
)  # fmt: skip


@dataclass(frozen=True)
class Container:
    """Everything built once per container: the settings, the use case and its caches."""

    settings: Settings
    vendor: TokenVendor
    calls: CallService
    jwks: JwksKeySource
    openai_key: OpenAIKeyStore

    def forget_cached_secrets(self) -> None:
        """After a SnapStart restore: the snapshot's keys and secret may be stale."""
        self.jwks.invalidate()
        self.openai_key.invalidate()


def _watchers(
    settings: Settings, env: Mapping[str, str], client: Any, log: Any
) -> WatcherStarter | None:
    """The call watcher's starter, when the template names one (WATCHER_FUNCTION_NAME)."""
    if not settings.watcher_function:
        return None
    if client is None:
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        client = botocore.session.get_session().create_client(
            "lambda", region_name=region, config=LAMBDA_CONFIG
        )
    return WatcherStarter(client, settings.watcher_function, log)


def quiet_library_loggers() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


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
    settings = Settings.from_env(env)
    quiet_library_loggers()
    if dynamodb is None or secretsmanager is None or scheduler is None:
        session = botocore.session.get_session()
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        dynamodb = dynamodb or session.create_client(
            "dynamodb", region_name=region, config=DYNAMODB_CONFIG
        )
        secretsmanager = secretsmanager or session.create_client(
            "secretsmanager", region_name=region, config=SECRETS_CONFIG
        )
        scheduler = scheduler or session.create_client(
            "scheduler", region_name=region, config=SCHEDULER_CONFIG
        )
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
    openai_key = OpenAIKeyStore(settings.openai_secret_id, secretsmanager)
    quota = QuotaStore(
        settings.quota_table, settings.quotas, dynamodb, global_windows=settings.global_quotas
    )
    realtime = RealtimeApi(settings.openai_base_url, http, openai_key)
    vendor = TokenVendor(
        verifier=verifier,
        profiles=settings.profiles,
        quota=quota,
        minter=realtime,
        webrtc_url=settings.webrtc_url,
        log=log,
    )
    calls = CallService(
        profiles=settings.profiles,
        quota=quota,
        ledger=CallLedger(settings.quota_table, settings.call_limits, dynamodb),
        realtime=realtime,
        scheduler=HangupScheduler(scheduler, settings.schedule_group, settings.scheduler_role_arn),
        precision=settings.scheduler_precision_seconds,
        # The hangup's schedule is created beside the ledger's write; threads start lazily.
        executor=ThreadPoolExecutor(max_workers=2, thread_name_prefix="schedule"),
        log=log,
        spend=SpendLedger(settings.quota_table, settings.spend_limits, dynamodb),
        watchers=_watchers(settings, env, lambda_client, log),
    )
    return Container(
        settings=settings, vendor=vendor, calls=calls, jwks=jwks, openai_key=openai_key
    )
