"""Nothing fails silently: what the code did not expect is counted for an alarm and costs the
caller nothing, and an unusable stored key is a 503 with an ERROR naming the secret."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.aws import Aws
from tests.support.env import SECRET_ID
from tests.support.handler import Mint, assert_problem, counters
from tests.support.internet import OPENAI_KEY, FakeInternet


def emf_metrics(output: str) -> dict[str, float]:
    """The metrics Powertools printed as CloudWatch embedded metric format lines."""
    found: dict[str, float] = {}
    for line in output.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if not isinstance(document, dict) or "_aws" not in document:
            continue
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                found[metric["Name"]] = found.get(metric["Name"], 0) + (
                    sum(value) if isinstance(value, list) else value
                )
    return found


def a_bug(request: httpx.Request) -> httpx.Response:
    raise KeyError("something the code never expected")


def test_an_unexpected_failure_is_a_500_counted_for_the_alarm_and_costs_no_quota(
    mint: Mint, aws: Aws, internet: FakeInternet, logs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    internet.openai_script.append(a_bug)

    reply = mint()

    body = assert_problem(reply, 500, "internal-error")
    assert "KeyError" not in reply.body and "never expected" not in json.dumps(body)
    assert emf_metrics(capsys.readouterr().out).get("UnexpectedErrors") == 1
    assert counters(aws) == 0, "the unit the failed mint took was not given back"
    assert any(r.get("level") == "ERROR" for r in logs.records())


def a_deep_bug(request: httpx.Request) -> httpx.Response:
    return its_other_half(request)  # two frames by turns: Python's traceback cannot fold them


def its_other_half(request: httpx.Request) -> httpx.Response:
    return a_deep_bug(request)


def test_an_unexpected_failure_logs_where_it_failed_in_a_few_lines(
    mint: Mint, internet: FakeInternet, logs: Any
) -> None:
    """Its whole traceback would be a thousand frames on one line (150 KB per request, for
    whoever can make it happen again): the innermost frames and the message are enough."""
    internet.openai_script.append(a_deep_bug)

    assert_problem(mint(), 500, "internal-error")

    assert len(logs.text) < 8_000
    [record] = [r for r in logs.records() if r.get("message") == "unexpected failure"]
    assert record["error"] == "RecursionError" and "in its_other_half" in record["trace"]


def test_a_secret_minted_but_never_delivered_gives_its_unit_back(
    mint: Mint, aws: Aws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from token_vendor.api.mint import Minted

    def broken(self: Minted) -> dict[str, Any]:
        raise TypeError("a bug while building the answer")

    monkeypatch.setattr(Minted, "response_body", broken)

    reply = mint()

    assert_problem(reply, 500, "internal-error")
    assert counters(aws) == 0
    emitted = emf_metrics(capsys.readouterr().out)
    assert emitted.get("UnexpectedErrors") == 1 and "SecretsMinted" not in emitted


def test_an_expected_refusal_is_not_counted_as_unexpected(
    mint: Mint, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mint(token="not-a-jwt").status == 401
    assert "UnexpectedErrors" not in emf_metrics(capsys.readouterr().out)


def test_the_template_alarms_on_the_unexpected_errors_metric() -> None:
    from devstack.template import load_template

    alarms = [
        r["Properties"]
        for r in load_template()["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    ]
    unexpected = [a for a in alarms if a.get("MetricName") == "UnexpectedErrors"]
    assert len(unexpected) == 1
    alarm = unexpected[0]
    assert alarm["Namespace"] == "RealtimeTokenVendor"
    assert {"Name": "service", "Value": "token-vendor"} in alarm["Dimensions"]
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"].startswith("GreaterThanOrEqual")


@pytest.mark.parametrize(
    "stored",
    [
        OPENAI_KEY + "\u200b",  # a zero-width space pasted with the key
        OPENAI_KEY + "\n",
        " " + OPENAI_KEY,
        OPENAI_KEY[:5] + "\u00e9" + OPENAI_KEY[5:],
        json.dumps({"api_key": OPENAI_KEY + "\u200b"}),
        json.dumps({"api_key": OPENAI_KEY + "\t"}),
        json.dumps({"api_key": OPENAI_KEY, "organization": "org-\u00e9"}),
        json.dumps({"api_key": OPENAI_KEY, "project": "proj 1"}),
        json.dumps({"api_key": ""}),  # the template's placeholder
    ],
)
def test_an_unusable_stored_key_is_a_503_with_an_error_naming_the_secret(
    mint: Mint, aws: Aws, internet: FakeInternet, logs: Any, stored: str
) -> None:
    aws.secretsmanager.put_secret_value(SecretId=SECRET_ID, SecretString=stored)

    reply = mint()

    assert_problem(reply, 503, "dependency-unavailable")
    assert internet.openai_requests() == [], "a key that cannot be sent was sent"
    assert counters(aws) == 0
    errors = [r for r in logs.records() if r.get("level") == "ERROR"]
    assert errors and any(SECRET_ID in json.dumps(r) for r in errors)
    assert OPENAI_KEY not in logs.text and OPENAI_KEY not in reply.body
