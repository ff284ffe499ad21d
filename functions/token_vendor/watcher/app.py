"""Lambda entry point of CallWatcherFunction: one invocation watches one call for up to
WATCHER_MAX_SECONDS, then starts its successor and passes the lease.

Started asynchronously (InvocationType Event, no retries) by the token function when a call is
admitted, and by itself at each hand-over, with the call's watch event (`core.jobs`). A
duplicate start finds the lease held (or the name already taken) and returns at once.

Invoked synchronously by the token function to close a GPT-Live session (`{"action": "close",
"call_id", "user"?, "seconds"}` → `{"closed": bool}`): the owner's hangup and the deadline of
a Live session end it through a sideband, which only this function opens (`closer`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from botocore.exceptions import BotoCoreError, ClientError

from ..core.deadline import Deadline
from ..core.echo import bounded_trace
from ..core.ending import EndReason
from ..core.errors import DependencyUnavailable, TokenVendorError
from ..core.ids import CALL_ID, CallId, UserId
from ..core.jobs import BadEvent, Job, new_token, parse_job
from .controls import UserControls
from .deps import WatcherContainer, container
from .live import LiveWatch
from .realtime import RealtimeWatch
from .sideband import Sideband, SidebandRefused
from .watch import Events, Metrics, Outcome, Timing

NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "RealtimeTokenVendor")
SERVICE = "call-watcher"
# The attach is tried again, backing off (0.25 s doubling to 4 s), for WATCHER_ATTACH_SECONDS:
# OpenAI may refuse a sideband while the call is still being set up.
ATTACH_FIRST_PAUSE_SECONDS = 0.25
ATTACH_MAX_PAUSE_SECONDS = 4.0
UNWATCHED_END_SECONDS = 15.0  # a call that cannot be watched: its hangup and settle
REATTACH_SECONDS = 5.0  # a Live sideband that dropped is attached again within this
CLOSE_SECONDS = (0.5, 20.0)  # the bounds of a close action's `seconds`
TOTALLED = frozenset({"WatcherFailures"})  # also emitted without dimensions: alarmed

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


# --- the handler ---------------------------------------------------------------------------


def handler(event: Any, context: Any) -> dict[str, Any]:
    metrics = EmfMetrics()
    if isinstance(event, dict) and event.get("action") == "close":
        return close(event, metrics)
    try:
        job, handed = parse_job(event)
    except BadEvent as exc:
        # A call started without a watcher that can read its event: counted and alarmed (the
        # call's backstop still ends it).
        logger.error("bad watch event", extra={"field": str(exc)})
        metrics.count("WatchEventsRefused")
        return {"status": "invalid", "field": str(exc)}
    try:
        return watch(job, handed, context, container(logger), metrics)
    except Exception as exc:  # before the lease was held: another watcher may hold the call
        logger.error("watcher failed", extra={"call_id": job.call_id, "error": _named(exc)})
        metrics.count("WatcherFailures", stage="start")
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
        named, job = job.token, job.with_new_token()
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
    # From here this watcher holds the call: whatever goes wrong, the call is not left
    # running unwatched (fail closed), unless the operator allows it (UNWATCHED_CALLS).
    try:
        return _watch_held(job, started, remaining, deadline, context, c, metrics)
    except Exception as exc:
        # A bounded trace, not the whole one: a deep recursion's is hundreds of KB a line.
        logger.error("watcher failed", extra={
            "call_id": job.call_id, "error": _named(exc), "trace": bounded_trace(exc),
        })  # fmt: skip
        metrics.count("WatcherFailures", stage=type(exc).__name__)
        return unwatched(job, c, metrics, "failed")


def _watch_held(
    job: Job,
    started: float,
    remaining: float,
    deadline: Deadline,
    context: Any,
    c: WatcherContainer,
    metrics: Metrics,
) -> dict[str, Any]:
    settings = c.settings
    attach_until = min(started + settings.core.attach_seconds, job.ends_at, started + remaining - 2)
    try:
        sideband = attach(job, c, attach_until)
    except (SidebandRefused, DependencyUnavailable) as exc:
        logger.warning("sideband not opened", extra={"call_id": job.call_id, "error": str(exc)})
        metrics.count("WatcherFailures", stage="attach")
        return unwatched(job, c, metrics, "not_attached")

    def in_force() -> None:
        """The profile's session is on its way: the token function may answer the offer."""
        try:
            c.leases.mark_attached(job.call_id, job.token)
        except TokenVendorError as exc:
            # The first renewal says it again; until then a predecessor reads on (the
            # overlap is charged once).
            logger.warning("attach not recorded", extra={"call_id": job.call_id, "error": str(exc)})
            metrics.count("WatcherFailures", stage="lease")

    try:
        hard_stop = started + max(min(settings.max_seconds, remaining - settings.margin_seconds), 1)
        timing = Timing(
            stop_at=hard_stop - settings.handover_seconds,
            hard_stop=hard_stop,
            lease_seconds=settings.lease_seconds,
            lease_expires=started + settings.lease_seconds,
        )
        controls = UserControls(c.controls, job.user, c.spend, job.budget_micros, metrics, logger)
        common: dict[str, Any] = {
            "job": job,
            "events": sideband,
            "prices": settings.prices,
            "meter": controls,
            "user_controls": controls,
            "leases": c.leases,
            "ender": c.ender,
            "metrics": metrics,
            "log": logger,
            "deadline": deadline,
            "in_force": in_force,
        }
        run: RealtimeWatch | LiveWatch
        if job.family == "live":
            run = LiveWatch(**common, reopen=lambda: reattach(job, c, deadline))
        else:
            run = RealtimeWatch(**common)
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


def attach(
    job: Job, c: WatcherContainer, until: float, sleep: Callable[[float], None] = time.sleep
) -> Sideband:
    """Open the call's sideband, trying again (backing off) until `until`: OpenAI may refuse
    one while the call is still being set up. A 403 is final; a 401 re-reads the key once."""
    pause, reread = ATTACH_FIRST_PAUSE_SECONDS, False
    while True:
        try:
            return Sideband.open(
                c.settings.core.openai_base_url, c.keys.get(), job.call_id, family=job.family
            )
        except SidebandRefused as exc:
            if exc.status == 403 or time.time() + pause >= until:
                raise
            if exc.status == 401 and not reread:
                reread = True
                c.keys.refresh()  # the key may have been rotated: read it again, once
                continue
        sleep(pause)
        pause = min(pause * 2, ATTACH_MAX_PAUSE_SECONDS)


def reattach(job: Job, c: WatcherContainer, deadline: Deadline) -> Events | None:
    """A Live session's sideband again, after it dropped (None: not within REATTACH_SECONDS,
    or not before the Lambda's own end)."""
    until = time.time() + min(REATTACH_SECONDS, max(deadline.remaining() - 5, 0))
    try:
        return attach(job, c, until)
    except (SidebandRefused, DependencyUnavailable):
        return None


def unwatched(job: Job, c: WatcherContainer, metrics: Metrics, status: str) -> dict[str, Any]:
    """A call this watcher holds but cannot watch: ended (UNWATCHED_CALLS=end, the default),
    or let run unmetered to its deadline (=allow). Counted and alarmed either way."""
    allowed = not c.settings.core.end_unwatched
    metrics.count("CallsUnwatched", outcome="allowed" if allowed else "ended")
    if allowed:
        c.leases.release(job.call_id, job.token)
        return {"status": status, "call_id": job.call_id}
    try:
        c.ender.end(
            user=job.user,
            call_id=job.call_id,
            reason=EndReason.UNWATCHED,
            deadline=Deadline(UNWATCHED_END_SECONDS),
            family=job.family,
        )
    except TokenVendorError as exc:
        # Its lease runs out: the backstop, or the deadline, ends it (both alarmed).
        logger.error("unwatched call not ended", extra={"call_id": job.call_id, "error": str(exc)})
        metrics.count("WatcherFailures", stage="end")
        return {"status": status, "call_id": job.call_id}
    c.leases.end(job.call_id)
    logger.warning("unwatched call ended", extra={"call_id": job.call_id, "status": status})
    return {"status": status, "call_id": job.call_id, "ended": True}


def close(event: dict[str, Any], metrics: Metrics) -> dict[str, Any]:
    """The token function's close of a GPT-Live session. `{"closed": true}` when this close
    ended it, `false` when it was over already; without `closed` when neither is known (the
    token function then keeps the session's slot and its end is tried again)."""
    call_id, user, seconds = event.get("call_id"), event.get("user"), event.get("seconds", 8)
    if not isinstance(call_id, str) or not CALL_ID.fullmatch(call_id):
        metrics.count("WatchEventsRefused")
        return {"status": "invalid", "field": "call_id"}
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        seconds = 8.0
    low, high = CLOSE_SECONDS
    deadline = Deadline(min(max(float(seconds), low), high))
    owner = UserId(user) if isinstance(user, str) and user else None
    try:
        closed = container(logger).closer.hang_up(CallId(call_id), deadline, owner)
    except Exception as exc:
        logger.error("session not closed", extra={"call_id": call_id, "error": _named(exc)})
        metrics.count("WatcherFailures", stage="close")
        return {"status": "failed", "call_id": call_id}
    logger.info("session closed on request", extra={"call_id": call_id, "closed": closed})
    return {"closed": closed, "call_id": call_id}


def hand_over(job: Job, context: Any, c: WatcherContainer, metrics: Metrics) -> str | None:
    """Names a successor in the lease, then starts it; None if it could not be started
    (or this watcher no longer holds the lease)."""
    successor = new_token()
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
            Payload=json.dumps(job.event(successor=successor)).encode(),
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


def _named(exc: Exception) -> str:
    """Our own errors say what failed; anything else is named by its type only (a library's
    message may carry a URL or a key)."""
    return str(exc) if isinstance(exc, TokenVendorError) else type(exc).__name__


def _remaining(context: Any, default: float) -> float:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    return remaining_ms() / 1000.0 if callable(remaining_ms) else default
