"""AWS clients as both functions build them: botocore (not boto3: its resource layer and
s3transfer cost a cold start ~60 ms for nothing), one configuration per service whose every
attempt, retries included, fits in the functions' deadlines, and library loggers kept quiet.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import botocore.session
from botocore.config import Config

# botocore at DEBUG logs response bodies, the secret string among them; httpx logs URLs;
# websockets logs the sideband's handshake (`Authorization: Bearer sk-...`) and its frames
# (instructions, what the caller said).
QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "httpx", "httpcore", "s3transfer", "websockets")

# One AWS attempt at worst: the connect and read timeouts of every configuration below. Each
# adapter that checks whether another attempt still fits its deadline asks for this much.
ATTEMPT_SECONDS = 3.0
DYNAMODB = Config(
    connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 3},
    tcp_keepalive=True,
)  # fmt: skip
SECRETS = Config(
    connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2}
)
# CreateSchedule carries a ClientToken, so a retry of it stays one schedule.
SCHEDULER = Config(
    connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2},
    tcp_keepalive=True,
)  # fmt: skip
# Lambda's async Invoke answers at once (202); one retry at most.
LAMBDA = Config(
    connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2}
)
# A synchronous Invoke (closing a GPT-Live session through the watcher's function) waits for
# the function's answer: never retried, its time bounded by the caller's deadline.
LAMBDA_SYNC = Config(
    connect_timeout=1, read_timeout=9, retries={"mode": "standard", "total_max_attempts": 1}
)


def region(env: Mapping[str, str]) -> str | None:
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")


@functools.cache
def _session() -> Any:
    # One session for every client: each session loads botocore's endpoint and service data
    # anew, which a cold start would pay once per client.
    return botocore.session.get_session()


def client(service: str, env: Mapping[str, str], config: Config) -> Any:
    """A botocore client for `service` in the function's region. Creating one makes no
    network call (credentials and endpoints resolve lazily), so it is safe before a snapshot."""
    return _session().create_client(service, region_name=region(env), config=config)


def quiet_library_loggers() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
