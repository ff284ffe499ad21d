"""Lambda entry point of CallWatcherFunction: one invocation watches one call for up to
WATCHER_MAX_SECONDS, then starts its successor and passes the lease.

Started asynchronously (InvocationType Event, no retries) by the token function when a call is
admitted, and by itself at each hand-over. The event:
`{"action": "watch", "call_id", "user", "profile", "session", "on_session_change", "ends_at",
"token"?, "handovers"?}`; `token` is present only on a hand-over (the lease names it; the
successor takes the lease under a fresh token of its own). A duplicate start finds the lease
held (or the name already taken) and returns at once.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import botocore.session
import httpx
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .config import WatcherSettings
from .deadline import Deadline
from .deps import DYNAMODB_CONFIG, SECRETS_CONFIG, quiet_library_loggers
from .errors import DependencyError, DependencyUnavailable, TokenVendorError
from .lease import LeaseStore
from .ledger import CallLedger, CallRecord
from .openai_client import RealtimeApi
from .openai_key import OpenAIKeyStore
from .sideband import Sideband, SidebandRefused
from .spend import SpendLedger
from .starter import watch_event
from .watch import CallWatch, Job, Metrics, Outcome, Timing

NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "RealtimeTokenVendor")
SERVICE = "call-watcher"
ATTACH_ATTEMPTS = 3
ATTACH_PAUSE_SECONDS = 0.5
END_SECONDS = 15.0  # hangup and settle, each with its own retries inside
TOTALLED = frozenset({"WatcherFailures"})  # also emitted without dimensions: alarmed
_CALL_ID = re.compile(r"^rtc_[A-Za-z0-9_-]{1,128}$")
# Lambda's async Invoke: connect and answer fast, retried once by botocore at most.
LAMBDA_CONFIG = Config(
    connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 2}
)

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))


class EmfMetrics:
    """One EMF line per data point, each with its own dimensions (spend by model and
    profile, deviations by profile, failures by stage)."""

    def count(self, name: str, value: float = 1, unit: str = "Count", **dims: str) -> None:
        if dims and name in TOTALLED:
            self.count(name, value, unit)  # the total, for the alarm; then by dimension
        with single_metric(
            name=name, unit=MetricUnit(unit), value=value, namespace=NAMESPACE
        ) as metric:
            metric.add_dimension("service", SERVICE)
            for key, dim in dims.items():
                metric.add_dimension(key, dim or "unknown")


# The watch's outcomes, in the ledger's words (END_REASONS), for the page's `end_reason`.
ENDED_BECAUSE = {"budget": "spend_limit"}


class CallEnder:
    """Ends a call the way its scheduled deadline would, only sooner: the cause recorded in
    the call ledger, the upstream hangup (best effort: the call may be gone already, 3b),
    then the ledger's settle, which frees the slot and returns the unused minutes at once.
    The schedule still fires later and finds the call settled (a no-op)."""

    def __init__(self, realtime: RealtimeApi, ledger: CallLedger) -> None:
        self._realtime = realtime
        self._ledger = ledger

    def end_call(self, call_id: str, user: str, reason: str) -> None:
        deadline = Deadline(END_SECONDS)
        why = ENDED_BECAUSE.get(reason, reason)
        try:
            call = self._live(user, call_id, deadline)
        except DependencyError as exc:  # the hangup comes first; the ledger is read again
            logger.warning("call ledger not read", extra={"error": str(exc)})
            call = None
        if call is not None:
            # The cause before the hangup: the page, whose call drops at the hangup, asks the
            # hangup route why at once and must hear this cause, not a guess.
            try:
                self._ledger.claim_end(user, call, why, deadline)
            except DependencyError as exc:
                logger.warning("end cause not recorded", extra={"error": str(exc)})
        try:
            self._realtime.hang_up(call_id, deadline)
        except DependencyError as exc:
            logger.warning("upstream hangup failed", extra={"error": str(exc)})
        call = call or self._live(user, call_id, deadline)
        if call is None:
            return
        left = self._ledger.settle(user, call, deadline, why)
        logger.info("call settled", extra={"call_id": call_id, "minutes_left": left})

    def _live(self, user: str, call_id: str, deadline: Deadline) -> CallRecord | None:
        """The call's ledger record while it is live; None when it ended or is unknown."""
        return self._ledger.view(user, deadline).find(call_id, live_only=True)


@dataclass
class WatcherContainer:
    settings: WatcherSettings
    leases: LeaseStore
    spend: SpendLedger
    keys: OpenAIKeyStore
    ender: CallEnder
    lambda_client: Any


_container: WatcherContainer | None = None
_container_lock = threading.Lock()


def build_container(env: Any = None) -> WatcherContainer:
    settings = WatcherSettings.from_env(env)
    quiet_library_loggers()
    session = botocore.session.get_session()
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    dynamodb = session.create_client("dynamodb", region_name=region, config=DYNAMODB_CONFIG)
    secretsmanager = session.create_client(
        "secretsmanager", region_name=region, config=SECRETS_CONFIG
    )
    lambda_client = session.create_client("lambda", region_name=region, config=LAMBDA_CONFIG)
    http = httpx.Client(timeout=httpx.Timeout(8.0, connect=2.0), follow_redirects=False)
    keys = OpenAIKeyStore(settings.openai_secret_id, secretsmanager)
    realtime = RealtimeApi(settings.openai_base_url, http, keys)
    return WatcherContainer(
        settings=settings,
        leases=LeaseStore(settings.table, dynamodb),
        spend=SpendLedger(settings.table, settings.spend_limits, dynamodb),
        keys=keys,
        ender=CallEnder(realtime, CallLedger(settings.table, settings.call_limits, dynamodb)),
        lambda_client=lambda_client,
    )


def container() -> WatcherContainer:
    global _container
    with _container_lock:  # the local runner may run several watchers in one process
        if _container is None:
            _container = build_container()
        return _container


# --- the event -----------------------------------------------------------------------------


class BadEvent(ValueError):
    pass


def parse_job(event: Any) -> tuple[Job, bool]:
    """The job, and whether this is a hand-over (the lease already names its token)."""
    if not isinstance(event, dict) or event.get("action") != "watch":
        raise BadEvent("not a watch event")
    call_id, user, profile = event.get("call_id"), event.get("user"), event.get("profile")
    if not isinstance(call_id, str) or not _CALL_ID.match(call_id):
        raise BadEvent("call_id")
    if not isinstance(user, str) or not user or not isinstance(profile, str):
        raise BadEvent("user or profile")
    session = event.get("session")
    if not isinstance(session, dict):
        raise BadEvent("session")
    on_change = event.get("on_session_change", "restore")
    if on_change not in ("restore", "hangup"):
        raise BadEvent("on_session_change")
    ends_at = event.get("ends_at")
    if isinstance(ends_at, bool) or not isinstance(ends_at, int | float):
        raise BadEvent("ends_at")
    token = event.get("token")
    handovers = event.get("handovers", 0)
    if token is not None and not isinstance(token, str):
        raise BadEvent("token")
    if isinstance(handovers, bool) or not isinstance(handovers, int) or handovers < 0:
        raise BadEvent("handovers")
    job = Job(
        call_id=call_id,
        user=user,
        profile=profile,
        session=session,
        on_session_change=on_change,
        ends_at=float(ends_at),
        token=token or _new_token(),
        handovers=handovers,
    )
    return job, token is not None


# --- the handler ---------------------------------------------------------------------------


def handler(event: Any, context: Any) -> dict[str, Any]:
    metrics = EmfMetrics()
    try:
        job, handed = parse_job(event)
    except BadEvent as exc:
        logger.error("bad watch event", extra={"field": str(exc)})
        return {"status": "invalid", "field": str(exc)}
    try:
        return watch(job, handed, context, container(), metrics)
    except TokenVendorError as exc:
        logger.error("watcher failed", extra={"call_id": job.call_id, "error": str(exc)})
        metrics.count("WatcherFailures", stage="dependency")
        return {"status": "failed", "call_id": job.call_id}
    except Exception as exc:  # never a retry storm: async invokes are not retried anyway
        logger.exception("watcher crashed", extra={"call_id": job.call_id})
        metrics.count("WatcherFailures", stage=type(exc).__name__)
        return {"status": "failed", "call_id": job.call_id}


def watch(
    job: Job, handed: bool, context: Any, c: WatcherContainer, metrics: Metrics
) -> dict[str, Any]:
    settings = c.settings
    started = time.time()
    remaining = _remaining(context, settings.max_seconds + settings.margin_seconds)
    deadline = Deadline(max(remaining - 1.0, 0.0))  # Lambda's, less a second to log
    if handed:
        # The name was in the start event, and a start event may come twice: swap it for
        # a token only this invocation knows, so exactly one of the two holds the lease.
        named, job = job.token, replace(job, token=_new_token())
        held = c.leases.take_over(job.call_id, named, job.token, settings.lease_seconds)
    else:
        held = c.leases.acquire(job.call_id, job.token, settings.lease_seconds)
    if not held:
        logger.info("another watcher holds this call", extra={"call_id": job.call_id})
        metrics.count("DuplicateStarts")
        return {"status": "not_holder", "call_id": job.call_id}
    if started >= job.ends_at:
        c.leases.release(job.call_id, job.token)
        return {"status": "past_deadline", "call_id": job.call_id}
    try:
        sideband = attach(job, c)
    except (SidebandRefused, DependencyUnavailable) as exc:
        logger.warning("sideband not opened", extra={"call_id": job.call_id, "error": str(exc)})
        metrics.count("WatcherFailures", stage="attach")
        c.leases.release(job.call_id, job.token)
        return {"status": "not_attached", "call_id": job.call_id}
    try:
        try:
            c.leases.mark_attached(job.call_id, job.token)
        except TokenVendorError as exc:
            # The first renewal says it again; until then a predecessor reads on (the
            # overlap is charged once).
            logger.warning("attach not recorded", extra={"call_id": job.call_id, "error": str(exc)})
            metrics.count("WatcherFailures", stage="lease")
        hard_stop = started + max(min(settings.max_seconds, remaining - settings.margin_seconds), 1)
        timing = Timing(
            stop_at=hard_stop - settings.handover_seconds,
            hard_stop=hard_stop,
            lease_seconds=settings.lease_seconds,
            lease_expires=started + settings.lease_seconds,
        )
        run = CallWatch(
            job=job,
            events=sideband,
            prices=settings.prices,
            meter=c.spend,
            leases=c.leases,
            ender=c.ender,
            metrics=metrics,
            log=logger,
            deadline=deadline,
        )
        outcome = run.run(timing, lambda: hand_over(job, context, c, metrics))
    finally:
        sideband.close()  # run closes it too; this covers what fails before run
    if outcome is Outcome.OUT_OF_TIME:
        # Live metering stops until a successor attaches (if one was started at all);
        # the scheduled deadline still ends and settles the call.
        metrics.count("WatcherFailures", stage="handover")
    logger.info(
        "watcher done",
        extra={
            "call_id": job.call_id,
            "outcome": outcome.value,
            "seconds": round(time.time() - started, 3),
            "charged_micros": run.charged_micros,
            "handovers": job.handovers,
        },
    )
    return {
        "status": outcome.value,
        "call_id": job.call_id,
        "charged_micros": run.charged_micros,
        "deviations": run.deviations_seen,
    }


def attach(job: Job, c: WatcherContainer) -> Sideband:
    """A few quick tries: a sideband may be refused while the call is still being set up."""
    for attempt in range(ATTACH_ATTEMPTS):
        try:
            return Sideband.open(c.settings.openai_base_url, c.keys.get(), job.call_id)
        except SidebandRefused as exc:
            if exc.status == 403 or attempt == ATTACH_ATTEMPTS - 1:
                raise
            if exc.status == 401:
                c.keys.refresh()  # the key may have been rotated: read it again, once
            else:
                time.sleep(ATTACH_PAUSE_SECONDS)
    raise SidebandRefused(None, "unreachable")  # pragma: no cover


def hand_over(job: Job, context: Any, c: WatcherContainer, metrics: Metrics) -> str | None:
    """Names a successor in the lease, then starts it; None if it could not be started
    (or this watcher no longer holds the lease)."""
    successor = _new_token()
    grace = c.settings.lease_seconds
    # A DynamoDB failure here is raised: the watch loop tries the hand-over again shortly.
    if not c.leases.pass_to(job.call_id, job.token, successor, grace):
        return None
    function = getattr(context, "invoked_function_arn", None) or getattr(
        context, "function_name", ""
    )
    try:
        c.lambda_client.invoke(
            FunctionName=function,
            InvocationType="Event",
            Payload=json.dumps(
                watch_event(
                    job.call_id,
                    job.user,
                    job.profile,
                    job.session,
                    job.on_session_change,
                    job.ends_at,
                    successor,
                    job.handovers + 1,
                )
            ).encode(),
        )
    except (ClientError, BotoCoreError) as exc:
        logger.error("successor not started", extra={"call_id": job.call_id, "error": str(exc)})
        metrics.count("WatcherFailures", stage="handover")
        try:
            c.leases.pass_to(job.call_id, successor, job.token, grace)  # take it back
        except TokenVendorError:
            metrics.count("WatcherFailures", stage="lease")
        return None
    metrics.count("Handovers")
    logger.info("handed over", extra={"call_id": job.call_id, "handovers": job.handovers + 1})
    return successor


def _new_token() -> str:
    return "w_" + secrets.token_hex(12)


def _remaining(context: Any, default: float) -> float:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    return remaining_ms() / 1000.0 if callable(remaining_ms) else default
