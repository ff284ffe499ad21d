"""The local Scheduler runner: moto's Scheduler API holds the schedules, the runner fires the
due ones through Lambda's Invoke API (the API stand-in) and deletes them, once."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from devstack import apigw, aws
from devstack.net import free_port, wait_for_port
from devstack.scheduler import Runner, due_time
from tests.support.env import ROOT
from tests.support.serving import serving

pytestmark = pytest.mark.stack

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:TokenFunction"
GROUP = "calls-test"


@dataclass
class Function:
    """What the API stand-in's handler was invoked with."""

    url: str
    events: list[Any] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def handler(self, event: Any, context: Any) -> None:
        with self.arrived:
            self.events.append(event)
            self.arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> list[Any]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.events) >= count, timeout), self.events
            return list(self.events)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = free_port()
    with subprocess.Popen(
        aws.moto_command("127.0.0.1", port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as moto:
        try:
            assert wait_for_port("127.0.0.1", port, time.monotonic() + 30)
            url = f"http://127.0.0.1:{port}"
            aws.client("scheduler", url).create_schedule_group(Name=GROUP)
            yield url
        finally:
            moto.terminate()
            moto.wait(10)


@pytest.fixture
def function() -> Iterator[Function]:
    function = Function(url="")
    with serving(lambda _: apigw.create_app(function.handler, aliases=["live"])) as url:
        function.url = url
        yield function


@pytest.fixture
def scheduler(moto_url: str) -> Iterator[Any]:
    client = aws.client("scheduler", moto_url)
    yield client
    for group in (GROUP, "default"):
        for schedule in client.list_schedules(GroupName=group)["Schedules"]:
            client.delete_schedule(Name=schedule["Name"], GroupName=group)


def at(unix: float) -> str:
    return time.strftime("at(%Y-%m-%dT%H:%M:%S)", time.gmtime(unix))


def create(
    scheduler: Any, name: str, when: float, payload: Any, group: str = GROUP, **options: Any
) -> None:
    target = {
        "Arn": FUNCTION_ARN,
        "RoleArn": "arn:aws:iam::123456789012:role/scheduler",
        "Input": json.dumps(payload),
    } | options.pop("target", {})
    scheduler.create_schedule(
        Name=name,
        GroupName=group,
        ScheduleExpression=at(when),
        FlexibleTimeWindow={"Mode": "OFF"},
        Target=target,
        **({"ActionAfterCompletion": "DELETE"} | options),
    )


def runner(scheduler: Any, function: Function, clock: Any = time.time) -> Runner:
    return Runner(scheduler, aws.client("lambda", function.url, retries=1), GROUP, clock)


def exists(scheduler: Any, name: str, group: str = GROUP) -> bool:
    try:
        scheduler.get_schedule(Name=name, GroupName=group)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ResourceNotFoundException"
        return False
    return True


def test_a_due_schedule_fires_once_with_its_input_and_is_deleted(
    scheduler: Any, function: Function
) -> None:
    event = {"action": "hangup", "call_id": "rtc_1", "user": "alice"}
    create(scheduler, "call-rtc_1", time.time() - 1, event)
    run = runner(scheduler, function)

    (firing,) = run.poll()

    assert (firing.name, firing.target, firing.status) == ("call-rtc_1", FUNCTION_ARN, 202)
    assert firing.deleted and not exists(scheduler, "call-rtc_1")
    assert function.wait_for(1) == [event]
    assert run.poll() == []
    time.sleep(0.2)
    assert function.events == [event]  # once: a second poll finds nothing


def test_a_schedule_waits_for_its_time(scheduler: Any, function: Function) -> None:
    offset = [0.0]
    run = runner(scheduler, function, clock=lambda: time.time() + offset[0])
    when = time.time() + 120
    create(scheduler, "later", when, {"action": "hangup", "call_id": "rtc_2", "user": "bob"})

    assert run.poll() == []
    assert exists(scheduler, "later")
    offset[0] = 121
    (firing,) = run.poll()

    assert 0 <= firing.late_s < 5 and firing.due == int(when)
    assert function.wait_for(1)[0]["call_id"] == "rtc_2"


def test_a_kept_schedule_fires_once_and_stays(scheduler: Any, function: Function) -> None:
    create(scheduler, "kept", time.time() - 1, {"n": 1}, ActionAfterCompletion="NONE")
    run = runner(scheduler, function)

    assert [f.deleted for f in run.poll()] == [False]
    assert run.poll() == []
    assert exists(scheduler, "kept")
    assert function.wait_for(1) == [{"n": 1}]


def test_only_the_runners_group_and_enabled_at_schedules_run(
    scheduler: Any, function: Function
) -> None:
    past = time.time() - 1
    create(scheduler, "elsewhere", past, {"n": 1}, group="default")
    create(scheduler, "off", past, {"n": 2}, State="DISABLED")
    scheduler.create_schedule(
        Name="recurring",
        GroupName=GROUP,
        ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": FUNCTION_ARN, "RoleArn": "arn:aws:iam::123456789012:role/scheduler"},
    )

    assert runner(scheduler, function).poll() == []
    assert all(exists(scheduler, n) for n in ("off", "recurring"))
    assert exists(scheduler, "elsewhere", group="default")


def test_a_failed_invocation_is_retried_within_the_retry_policy(
    scheduler: Any, function: Function
) -> None:
    missing = FUNCTION_ARN.replace("TokenFunction", "Gone")
    policy = {"MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 60}
    target = {"Arn": missing, "RetryPolicy": policy}
    create(scheduler, "unlucky", time.time() - 1, {"n": 1}, target=target)
    run = runner(scheduler, function)

    first, second = run.poll(), run.poll()

    assert [(f.status, f.error, f.deleted) for f in first] == [
        (404, "ResourceNotFoundException", False)
    ]
    assert [(f.status, f.deleted) for f in second] == [(404, True)]
    assert run.poll() == [] and not exists(scheduler, "unlucky")
    assert function.events == []


@pytest.mark.parametrize(
    ("expression", "zone", "expected"),
    [
        ("at(2026-12-01T04:00:00)", None, "2026-12-01T04:00:00+00:00"),
        ("at(2026-12-01T05:00:00)", "Europe/Berlin", "2026-12-01T04:00:00+00:00"),
        ("at(2026-07-01T06:00:00)", "Europe/Berlin", "2026-07-01T04:00:00+00:00"),
        ("rate(5 minutes)", None, None),
        ("cron(0 4 * * ? *)", None, None),
        ("at(2026-12-01T04:00)", None, None),
        ("at(2026-12-01T04:00:00)", "Mars/Olympus", None),
    ],
)
def test_due_time_reads_one_time_expressions(
    expression: str, zone: str | None, expected: str | None
) -> None:
    import datetime as dt

    due = due_time(expression, zone)
    expect = None if expected is None else dt.datetime.fromisoformat(expected).timestamp()
    assert due == expect


def test_the_runner_process_fires_at_the_deadline(scheduler: Any, function: Function) -> None:
    """The CLI as the stack starts it: polling on its own, reporting on GET /status."""
    port = free_port()
    command = [sys.executable, "-m", "devstack.scheduler", "--port", str(port),
               "--aws-endpoint", scheduler.meta.endpoint_url, "--lambda-endpoint", function.url,
               "--group", GROUP, "--interval", "0.2"]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin"} | aws.FAKE_CREDENTIALS | {"AWS_DEFAULT_REGION": "us-east-1"}
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        try:
            assert wait_for_port("127.0.0.1", port, time.monotonic() + 20)
            due = time.time() + 2
            create(scheduler, "soon", due, {"action": "hangup", "call_id": "rtc_3"})
            assert function.wait_for(1, timeout=10) == [{"action": "hangup", "call_id": "rtc_3"}]
            fired_at = time.time()
            status = httpx.get(f"http://127.0.0.1:{port}/status").json()
            (firing,) = status["fired"]
            assert firing["name"] == "soon" and firing["deleted"] is True
            # at() has one-second resolution: the runner fires within a poll of the second.
            assert int(due) <= firing["fired_at"] < int(due) + 1.5
            assert fired_at - int(due) < 2
        finally:
            process.terminate()
            output, _ = process.communicate(timeout=10)
    assert re.search(r"schedule soon \(due \d\d:\d\d:\d\d\) fired \d+\.\d s late", output), output
    assert "Traceback" not in output
