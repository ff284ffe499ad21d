"""A local stand-in for EventBridge Scheduler running one-time schedules.

moto stores schedules but never runs them. This runner polls moto's Scheduler API for the
`at()` schedules of one group, and when one is due invokes its target (a Lambda function
ARN) with the schedule's Input through Lambda's Invoke API (the API stand-in serves it), as
an asynchronous invocation, as Scheduler does; then deletes the schedule when its
ActionAfterCompletion is DELETE. A failed invocation is retried on later polls within the
target's RetryPolicy.

Differences from AWS, on purpose: a schedule fires as soon as a poll finds it due (AWS fires
somewhere in the minute of its `at()` time, or later inside a flexible window), so tests
and `make dev` see deadlines to the second; rate() and cron() schedules are not run.

`python -m devstack.scheduler --aws-endpoint URL --lambda-endpoint URL --group NAME`
(GET /status on --port tells what it fired.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError

from devstack import aws
from devstack.net import serve

log = logging.getLogger("scheduler")

AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
LAMBDA_ARN = re.compile(r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[^:]+(:[^:]+)?$")
FIRED_KEPT = 100
Clock = Callable[[], float]


def due_time(expression: str, timezone: str | None) -> float | None:
    """The Unix time of a one-time `at(yyyy-mm-ddThh:mm:ss)` expression; None for others."""
    match = AT.match(expression.strip())
    if match is None:
        return None
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return None
    local = dt.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=zone)
    return local.timestamp()


@dataclass
class Firing:
    """One schedule run: what was invoked, when, and how it went."""

    name: str
    target: str
    due: float
    fired_at: float
    late_s: float
    status: int | None  # the Invoke API's status; None when it could not be reached
    error: str | None = None
    deleted: bool = False


@dataclass
class Runner:
    scheduler: Any  # a botocore "scheduler" client (moto)
    lambda_: Any  # a botocore "lambda" client (the API stand-in)
    group: str
    clock: Clock = time.time
    fired: list[Firing] = field(default_factory=list)
    polls: int = 0
    _attempts: dict[str, int] = field(default_factory=dict)
    _done: set[str] = field(default_factory=set)  # run, kept (ActionAfterCompletion NONE)
    _warned: set[str] = field(default_factory=set)

    def poll(self) -> list[Firing]:
        """Runs every due schedule of the group once; returns what it fired."""
        self.polls += 1
        fired = []
        for summary in self._schedules():
            name = summary["Name"]
            if summary.get("State", "ENABLED") != "ENABLED" or summary["Arn"] in self._done:
                continue
            try:
                schedule = self.scheduler.get_schedule(Name=name, GroupName=self.group)
            except ClientError:
                continue  # deleted since it was listed (the function hung the call up)
            firing = self._run_if_due(schedule)
            if firing is not None:
                fired.append(firing)
        self.fired = (self.fired + fired)[-FIRED_KEPT:]
        return fired

    def _schedules(self) -> Iterator[dict[str, Any]]:
        try:
            pages = self.scheduler.get_paginator("list_schedules").paginate(GroupName=self.group)
            for page in pages:
                yield from page.get("Schedules", [])
        except ClientError as exc:  # the group is created after this runner starts
            self._warn_once("list", f"cannot list group {self.group!r} yet: {exc}")
        except BotoCoreError as exc:
            self._warn_once("aws", f"moto is not reachable: {exc}")

    def _run_if_due(self, schedule: dict[str, Any]) -> Firing | None:
        name, arn = schedule["Name"], schedule["Arn"]
        due = due_time(schedule["ScheduleExpression"], schedule.get("ScheduleExpressionTimezone"))
        if due is None:
            self._warn_once(
                arn,
                f"{name}: only at() schedules run locally, not {schedule['ScheduleExpression']!r}",
            )
            return None
        now = self.clock()
        if now < due:
            return None
        target = schedule["Target"]
        if not LAMBDA_ARN.match(target["Arn"]):
            self._warn_once(arn, f"{name}: only Lambda targets run locally, not {target['Arn']}")
            return None
        firing = self._invoke(name, target, due, now)
        if firing.status == 202 or not self._retry(arn, target, due, now):
            firing.deleted = self._complete(schedule)
        log.info(
            "schedule %s (due %s) fired %.1f s late -> %s: %s%s",
            name,
            time.strftime("%H:%M:%S", time.gmtime(due)),
            firing.late_s,
            firing.target,
            firing.status,
            f" ({firing.error})" if firing.error else "",
        )
        return firing

    def _invoke(self, name: str, target: dict[str, Any], due: float, now: float) -> Firing:
        firing = Firing(name, target["Arn"], due, now, round(now - due, 3), None)
        try:
            answer = self.lambda_.invoke(
                FunctionName=target["Arn"],
                InvocationType="Event",  # Scheduler invokes Lambda asynchronously
                Payload=(target.get("Input") or "{}").encode(),
            )
            firing.status = int(answer["StatusCode"])
        except ClientError as exc:
            firing.status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            firing.error = exc.response.get("Error", {}).get("Code")
        except BotoCoreError as exc:
            firing.error = type(exc).__name__
        return firing

    def _retry(self, arn: str, target: dict[str, Any], due: float, now: float) -> bool:
        """Whether a failed invocation is tried again (the target's RetryPolicy)."""
        policy = target.get("RetryPolicy") or {}
        attempts = self._attempts.get(arn, 0) + 1
        self._attempts[arn] = attempts
        max_age = float(policy.get("MaximumEventAgeInSeconds", 86400))
        return now - due <= max_age and attempts <= int(policy.get("MaximumRetryAttempts", 185))

    def _complete(self, schedule: dict[str, Any]) -> bool:
        self._attempts.pop(schedule["Arn"], None)
        if schedule.get("ActionAfterCompletion") != "DELETE":
            self._done.add(schedule["Arn"])  # AWS keeps it, and never runs it again
            return False
        with contextlib.suppress(ClientError):  # someone deleted it first: same outcome
            self.scheduler.delete_schedule(Name=schedule["Name"], GroupName=self.group)
        return True

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    def status(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "polls": self.polls,
            "fired": [asdict(f) for f in self.fired],
        }


RUNNER = web.AppKey("runner", Runner)


def create_app(runner: Runner, interval: float = 0.5) -> web.Application:
    app = web.Application()
    app[RUNNER] = runner

    async def status(request: web.Request) -> web.Response:
        return web.json_response(runner.status())

    async def loop(app: web.Application) -> Any:
        task = asyncio.create_task(_poll_forever(runner, interval))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.router.add_get("/status", status)
    app.cleanup_ctx.append(loop)
    return app


async def _poll_forever(runner: Runner, interval: float) -> None:
    running = asyncio.get_running_loop()
    while True:
        try:
            # botocore blocks: a thread keeps /status answering meanwhile.
            await running.run_in_executor(None, runner.poll)
        except Exception:  # one bad poll must not end the runner
            log.exception("poll failed")
        await asyncio.sleep(interval)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3005, help="for GET /status")
    parser.add_argument("--aws-endpoint", required=True, help="moto's URL")
    parser.add_argument("--lambda-endpoint", required=True, help="the Invoke API's URL")
    parser.add_argument("--group", required=True, help="the schedule group to run")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    runner = Runner(
        scheduler=aws.client("scheduler", args.aws_endpoint),
        # One attempt per poll: the target's RetryPolicy decides about another, as on AWS.
        lambda_=aws.client("lambda", args.lambda_endpoint, retries=1),
        group=args.group,
    )
    serve(create_app(runner, args.interval), args.host, args.port, "scheduler")


if __name__ == "__main__":
    main()
