"""Nothing dropped silently (issue 19, part 4), read from template.yaml: the hangup failures
queue and exactly who may send to it, the token function's on-failure destination, the
parameters that choose fail-closed or fail-open, each alarm with the metric it watches, and
the dashboard that shows them."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from token_vendor.api.settings import ApiSettings
from token_vendor.core.errors import ConfigError
from token_vendor.watcher.settings import WatcherSettings

from devstack.template import load_template
from tests.support.env import BASE_ENV, FUNCTION_DIR

T = load_template()
R = T["Resources"]
QUEUE_ARN = {"Fn::GetAtt": ["HangupFailuresQueue", "Arn"]}
ALARM_ACTIONS = {"Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]}
TOKEN = {"Ref": "TokenFunction"}
WATCHER = {"Ref": "CallWatcherFunction"}


def props(name: str) -> dict[str, Any]:
    return R[name]["Properties"]


def env(function: str) -> dict[str, Any]:
    return props(function)["Environment"]["Variables"]


# --- The queue ---------------------------------------------------------------------------------


def test_the_queue_is_a_standard_encrypted_queue_that_keeps_messages_14_days() -> None:
    queue = R["HangupFailuresQueue"]

    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    # Scheduler's dead-letter queues and Lambda's destinations take standard queues only.
    assert "FifoQueue" not in queue["Properties"]


def test_both_schedules_of_a_call_are_told_the_queue_as_their_dead_letter_queue() -> None:
    assert env("TokenFunction")["HANGUP_FAILURES_QUEUE_ARN"] == QUEUE_ARN
    # The function names it on every schedule it makes (the code's side of the contract).
    code = (FUNCTION_DIR / "token_vendor" / "api" / "settings.py").read_text()
    assert 'env.text("HANGUP_FAILURES_QUEUE_ARN")' in code
    # The watcher makes no schedules.
    assert "HANGUP_FAILURES_QUEUE_ARN" not in env("CallWatcherFunction")


def test_a_hangup_the_function_fails_for_good_goes_to_the_queue_not_away() -> None:
    config = props("TokenFunction")["EventInvokeConfig"]

    assert config["DestinationConfig"] == {"OnFailure": {"Type": "SQS", "Destination": QUEUE_ARN}}
    assert "OnSuccess" not in config["DestinationConfig"]


def _grants_on_the_queue() -> dict[str, set[str]]:
    """Every (resource, action) that names the queue, or any SQS action, in the template."""
    found: dict[str, set[str]] = {}
    for name, resource in R.items():
        properties = resource.get("Properties", {})
        documents = [p for p in properties.get("Policies", []) if isinstance(p, dict)]
        statements = [
            s
            for document in documents
            for s in document.get("PolicyDocument", document).get("Statement", [])
        ]
        for statement in statements:
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            names_queue = "HangupFailuresQueue" in json.dumps(statement["Resource"])
            if names_queue or any(a.lower().startswith("sqs:") for a in actions):
                assert statement["Resource"] == QUEUE_ARN, name  # exactly that queue
                assert statement["Effect"] == "Allow" and "Condition" not in statement
                found.setdefault(name, set()).update(actions)
    return found


def test_exactly_the_scheduler_role_and_the_token_function_may_send_to_exactly_the_queue() -> None:
    assert _grants_on_the_queue() == {
        "HangupSchedulerRole": {"sqs:SendMessage"},  # Scheduler's dead letters
        "TokenFunction": {"sqs:SendMessage"},  # Lambda's on-failure records
    }
    # No resource policy widens it: the replay reads it with the operator's own credentials.
    assert not [r for r in R.values() if r["Type"] == "AWS::SQS::QueuePolicy"]


def test_the_replay_finds_the_queue_and_the_function_in_the_outputs() -> None:
    outputs = T["Outputs"]

    assert outputs["HangupFailuresQueueUrl"]["Value"] == {"Ref": "HangupFailuresQueue"}
    assert outputs["FunctionName"]["Value"] == TOKEN


# --- Fail closed by default: the parameters and where they go ----------------------------------


def test_unwatched_calls_end_by_default_and_may_only_be_allowed_explicitly() -> None:
    parameter = T["Parameters"]["UnwatchedCalls"]

    assert parameter["Default"] == "end"
    assert sorted(parameter["AllowedValues"]) == ["allow", "end"]


@pytest.mark.parametrize(
    ("parameter", "variable", "default", "functions"),
    [
        ("UnwatchedCalls", "UNWATCHED_CALLS", "end", ("TokenFunction", "CallWatcherFunction")),
        (
            "WatcherAttachSeconds",
            "WATCHER_ATTACH_SECONDS",
            30,
            ("TokenFunction", "CallWatcherFunction"),
        ),
        ("WatcherAnswerWaitSeconds", "WATCHER_ANSWER_WAIT_SECONDS", 3, ("TokenFunction",)),
    ],
)
def test_each_parameter_reaches_the_functions_that_read_it(
    parameter: str, variable: str, default: Any, functions: tuple[str, ...]
) -> None:
    assert T["Parameters"][parameter]["Default"] == default
    for function in ("TokenFunction", "CallWatcherFunction"):
        if function in functions:
            assert env(function)[variable] == {"Ref": parameter}, function
        else:
            assert variable not in env(function), function


WATCHER_ENV = {"OPENAI_SECRET_ID": "key", "QUOTA_TABLE": "table"}


@pytest.mark.parametrize(
    ("parameter", "variable", "settings"),
    [
        ("WatcherAttachSeconds", "WATCHER_ATTACH_SECONDS", "both"),
        ("WatcherAnswerWaitSeconds", "WATCHER_ANSWER_WAIT_SECONDS", "api"),
    ],
)
def test_each_number_the_template_accepts_the_functions_accept_and_no_more(
    parameter: str, variable: str, settings: str
) -> None:
    """A value CloudFormation lets through must not stop the functions' cold start, and the
    template refuses what they would refuse."""
    spec = T["Parameters"][parameter]

    def accepted(value: float) -> bool:
        try:
            ApiSettings.from_env(BASE_ENV | {variable: f"{value:g}"})
            if settings == "both":
                WatcherSettings.from_env(WATCHER_ENV | {variable: f"{value:g}"})
        except ConfigError:
            return False
        return True

    assert accepted(spec["MinValue"]) and accepted(spec["Default"]) and accepted(spec["MaxValue"])
    assert not accepted(spec["MaxValue"] + 1)
    assert spec["MinValue"] == 0 or not accepted(spec["MinValue"] - 0.5)


@pytest.mark.parametrize("value", ["end", "allow"])
def test_every_allowed_unwatched_calls_value_is_one_the_functions_take(value: str) -> None:
    assert value in T["Parameters"]["UnwatchedCalls"]["AllowedValues"]
    api = ApiSettings.from_env(BASE_ENV | {"UNWATCHED_CALLS": value})
    watcher = WatcherSettings.from_env(WATCHER_ENV | {"UNWATCHED_CALLS": value})

    assert api.core.end_unwatched is watcher.core.end_unwatched is (value == "end")


def test_sam_local_schedules_name_no_queue_the_local_stack_lacks() -> None:
    """SAM CLI would otherwise make up an ARN for the queue (it resolves !GetAtt itself)."""
    local = json.loads((FUNCTION_DIR.parent / "events" / "env.json").read_text())["TokenFunction"]

    assert local["HANGUP_FAILURES_QUEUE_ARN"] == ""


# --- Alarms: each with the metric it watches ---------------------------------------------------

Watched = tuple[str, str, tuple[tuple[str, Any], ...]]  # namespace, metric, dimensions


def watched(alarm: dict[str, Any]) -> set[Watched]:
    """The metrics an alarm adds up. For metric math, each must be in the expression."""
    if "Metrics" not in alarm:
        dims = tuple((d["Name"], json.dumps(d["Value"])) for d in alarm["Dimensions"])
        return {(alarm["Namespace"], alarm["MetricName"], dims)}
    (total,) = [m for m in alarm["Metrics"] if m.get("ReturnData")]
    parts = [m for m in alarm["Metrics"] if "MetricStat" in m]
    assert len(parts) == len(alarm["Metrics"]) - 1
    terms = re.findall(r"FILL\((\w+), 0\)", total["Expression"])
    assert total["Expression"] == " + ".join(f"FILL({t}, 0)" for t in terms)
    assert sorted(terms) == sorted(m["Id"] for m in parts)  # none left out of the sum
    found = set()
    for m in parts:
        assert m["MetricStat"]["Stat"] == "Sum" and m["MetricStat"]["Period"] == 300
        metric = m["MetricStat"]["Metric"]
        dims = tuple((d["Name"], json.dumps(d["Value"])) for d in metric["Dimensions"])
        found.add((metric["Namespace"], metric["MetricName"], dims))
    return found


def ours(metric: str, service: str, **dims: str) -> Watched:
    pairs = [("service", service), *dims.items()]
    return ("RealtimeTokenVendor", metric, tuple((k, json.dumps(v)) for k, v in pairs))


def lambda_metric(metric: str, function: dict[str, str]) -> Watched:
    return ("AWS/Lambda", metric, (("FunctionName", json.dumps(function)),))


ALARMS: dict[str, set[Watched]] = {
    # The queue holds a hangup or backstop that did not run.
    "HangupFailuresAlarm": {
        (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            (("QueueName", json.dumps({"Fn::GetAtt": ["HangupFailuresQueue", "QueueName"]})),),
        )
    },
    # ...or could not even be put there.
    "HangupsLostAlarm": {
        lambda_metric("DestinationDeliveryFailures", TOKEN),
        (
            "AWS/Scheduler",
            "InvocationsFailedToBeSentToDeadLetterCount",
            (("ScheduleGroup", json.dumps({"Ref": "CallScheduleGroup"})),),
        ),
    },
    "CallsUnwatchedAlarm": {
        ours("CallsUnwatched", service, outcome=outcome)
        for service in ("token-vendor", "call-watcher")
        for outcome in ("ended", "allowed")
    },
    "WatchEventsRefusedAlarm": {ours("WatchEventsRefused", "call-watcher")},
    "WatcherStartFailuresAlarm": {ours("UpstreamErrors", "token-vendor", dependency="watcher")},
    "WatcherThrottlesAlarm": {lambda_metric("Throttles", WATCHER)},
    "AsyncEventsDroppedAlarm": {
        lambda_metric("AsyncEventsDropped", TOKEN),
        lambda_metric("AsyncEventsDropped", WATCHER),
    },
}


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_each_alarm_watches_its_metric_and_tells_the_operator(name: str) -> None:
    alarm = props(name)

    assert watched(alarm) == ALARMS[name]
    assert alarm["AlarmActions"] == ALARM_ACTIONS  # the e-mail topic, when one is given
    assert alarm["TreatMissingData"] == "notBreaching" and alarm["EvaluationPeriods"] == 1
    assert len(alarm["AlarmDescription"]) > 40
    # One is one too many: at the first occurrence in 5 minutes.
    if name == "HangupFailuresAlarm":
        assert alarm["Statistic"] == "Maximum" and alarm["Period"] == 300
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    else:
        assert alarm.get("Statistic", "Sum") == "Sum" and alarm.get("Period", 300) == 300
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == (
            "GreaterThanOrEqualToThreshold",
            1,
        )


def test_the_alarmed_metrics_of_ours_are_emitted_with_those_dimensions() -> None:
    """An alarm on a metric, or dimension, that nothing emits would never fire."""
    api = (FUNCTION_DIR / "token_vendor" / "api" / "app.py").read_text()
    watcher = (FUNCTION_DIR / "token_vendor" / "watcher" / "app.py").read_text()
    placement = (FUNCTION_DIR / "token_vendor" / "api" / "placement.py").read_text()

    assert re.search(r'add_dimension\(name="outcome", value=outcome\)\s+metrics\.add_metric\('
                     r'name="CallsUnwatched"', api)  # fmt: skip
    assert 'if outcome in ("ended", "allowed")' in api
    assert 'metrics.count("CallsUnwatched", outcome="allowed" if allowed else "ended")' in watcher
    assert 'metrics.count("WatchEventsRefused")' in watcher
    assert 'DependencyUnavailable("watcher"' in placement


def test_upstream_failures_add_up_every_dependency_the_token_function_names() -> None:
    dependencies = {
        dict(dims)["dependency"]
        for _, metric, dims in watched(props("UpstreamFailuresAlarm"))
        if metric == "UpstreamErrors"
    }

    # Every dependency the token function's code can name, read from the code itself, so a
    # new one (the door's secret) cannot go unalarmed. Apart: the watcher's start has its own
    # alarm (one failure is a call refused or unwatched), and `budget` is the Lambda's own
    # time running short, no dependency failing.
    named = set()
    for room in ("api", "core"):
        for source in (FUNCTION_DIR / "token_vendor" / room).glob("*.py"):
            named |= set(
                re.findall(r'(?:Dependency\w+|Upstream\w+)\(\s*"([a-z_]+)"', source.read_text())
            )
    named.add("quota_store")  # retry_guard.unavailable's default name
    assert dependencies == {json.dumps(d) for d in named - {"watcher", "budget"}}
    assert json.dumps("origin_secret") in dependencies


# --- The dashboard shows them ------------------------------------------------------------------


def dashboard_metrics() -> set[tuple[Any, ...]]:
    """Each metric line of the dashboard, `.` resolved and the Sub variables named."""
    body, variables = props("Dashboard")["DashboardBody"]["Fn::Sub"]
    names = {f"${{{k}}}": json.dumps(v) for k, v in variables.items()}
    found: set[tuple[Any, ...]] = set()
    for widget in json.loads(body)["widgets"]:
        previous: list[Any] = []
        for line in widget["properties"]["metrics"]:
            if isinstance(line[0], dict):
                search = line[0]["expression"]
                for metric in re.findall(r'MetricName=\\?"(\w+)\\?"', search):
                    space = re.search(r"\{(\w+),", search)
                    found.add((space.group(1) if space else "", metric, (("SEARCH", search),)))
                continue
            if line[0] == "...":  # the previous line's metric, another statistic
                continue
            parts = [p for p in line if not isinstance(p, dict)]
            parts = [previous[i] if p == "." else p for i, p in enumerate(parts)]
            previous = parts
            pairs = tuple(
                sorted(
                    (parts[i], names.get(parts[i + 1], parts[i + 1]))
                    for i in range(2, len(parts), 2)
                )
            )
            found.add((parts[0], parts[1], pairs))
    return found


def test_the_dashboard_shows_every_metric_these_alarms_watch() -> None:
    shown = dashboard_metrics()
    searched = {(ns, metric) for ns, metric, dims in shown if dims and dims[0][0] == "SEARCH"}

    for name, metrics in ALARMS.items():
        for namespace, metric, dims in metrics:
            as_shown = tuple(
                sorted((k, v if v.startswith("{") else json.loads(v)) for k, v in dims)
            )
            assert (namespace, metric, as_shown) in shown or (namespace, metric) in searched, (
                name,
                metric,
            )


def test_calls_without_a_watcher_are_shown_by_outcome_and_service() -> None:
    body = props("Dashboard")["DashboardBody"]["Fn::Sub"][0]
    widgets = {w["properties"]["title"]: w for w in json.loads(body)["widgets"]}

    unwatched = json.dumps(widgets["Calls without a watcher"])
    assert "{RealtimeTokenVendor,outcome,service}" in unwatched and "CallsUnwatched" in unwatched
    assert "CallsAnsweredUnwatched" in unwatched  # the window the answer did not wait out
    lost = json.dumps(widgets["Hangups not run, async events dropped"])
    assert "ApproximateNumberOfMessagesVisible" in lost and "${Queue}" in lost
    variables = props("Dashboard")["DashboardBody"]["Fn::Sub"][1]
    assert variables["Queue"] == {"Fn::GetAtt": ["HangupFailuresQueue", "QueueName"]}
    assert variables["Watcher"] == WATCHER and variables["Group"] == {"Ref": "CallScheduleGroup"}
