"""The call watcher's composition root: real clients and adapters, built once per container
(on the first invocation, never at import) and kept for the container's life."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ..core import aws
from ..core.controls import ControlReader
from ..core.ending import CallEnder
from ..core.lease import LeaseStore
from ..core.ledger import CallLedger
from ..core.openai_key import OpenAIKeyStore
from ..core.openai_rest import RealtimeRest
from ..core.spend import SpendLedger
from .closer import LiveSessionCloser
from .settings import WatcherSettings


@dataclass(frozen=True)
class WatcherContainer:
    settings: WatcherSettings
    leases: LeaseStore
    spend: SpendLedger
    keys: OpenAIKeyStore
    ender: CallEnder
    closer: LiveSessionCloser
    lambda_client: Any
    controls: ControlReader | None = None


def build_container(env: Mapping[str, str] | None = None, *, log: Any = None) -> WatcherContainer:
    env = os.environ if env is None else env
    settings = WatcherSettings.from_env(env)
    core = settings.core
    aws.quiet_library_loggers()
    dynamodb = aws.client("dynamodb", env, aws.DYNAMODB)
    keys = OpenAIKeyStore(core.openai_secret_id, aws.client("secretsmanager", env, aws.SECRETS))
    http = httpx.Client(timeout=httpx.Timeout(8.0, connect=2.0), follow_redirects=False)
    spend = SpendLedger(core.table, core.spend_limits, dynamodb)
    # A Live session is ended through a sideband (OpenAI documents no WebRTC hangup).
    closer = LiveSessionCloser(core.openai_base_url, keys, spend, settings.prices, log=log)
    return WatcherContainer(
        settings=settings,
        leases=LeaseStore(core.table, dynamodb),
        spend=spend,
        keys=keys,
        ender=CallEnder(
            CallLedger(core.table, core.call_limits, dynamodb),
            RealtimeRest(core.openai_base_url, http, keys),
            live=closer,
            log=log,
        ),
        closer=closer,
        lambda_client=aws.client("lambda", env, aws.LAMBDA),
        controls=ControlReader(core.table, dynamodb),
    )


_container: WatcherContainer | None = None
_container_lock = threading.Lock()


def container(log: Any = None) -> WatcherContainer:
    global _container
    with _container_lock:  # the local runner may run several watchers in one process
        if _container is None:
            _container = build_container(log=log)
        return _container
