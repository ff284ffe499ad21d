"""`make replay-hangups`: the hangup failures queue replayed on the token function, against
moto's SQS and CloudFormation, with Lambda's Invoke stubbed (botocore's Stubber)."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from deploy import replay_hangups
from devstack.aws import FAKE_CREDENTIALS
from devstack.template import load_template
from tests.support.aws import in_process_aws, use_fake_aws

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = "rtv-TokenFunction-AbC123"
USER = "u-3f9a0c1d2e"  # a user hash: the program never prints it
SCHEDULED = {"action": "hangup", "call_id": "rtc_scheduled", "user": USER}
FAILED = {"action": "backstop", "call_id": "rtc_failed", "user": USER}


def scheduler_dead_letter(event: dict[str, Any]) -> dict[str, Any]:
    """What Scheduler puts in its dead-letter queue: the schedule's Input, the error aside."""
    return {
        "MessageBody": json.dumps(event, separators=(",", ":")),
        "MessageAttributes": {
            name: {"DataType": "String", "StringValue": value}
            for name, value in {
                "ERROR_CODE": "AWS.Scheduler.TargetThrottled",
                "ERROR_MESSAGE": "Rate exceeded",
                "RETRY_ATTEMPTS": "5",
                "IS_PAYLOAD_TRUNCATED": "false",
                "SCHEDULE_ARN": "arn:aws:scheduler:us-east-1:123456789012:schedule/g/call-x",
                "TARGET_ARN": f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}:live",
            }.items()
        },
    }


def lambda_failure_record(event: dict[str, Any], message: str = "OpenAI answered 503") -> str:
    """What Lambda sends an on-failure destination: the event as `requestPayload`."""
    return json.dumps(
        {
            "version": "1.0",
            "timestamp": "2026-12-06T20:50:18.000Z",
            "requestContext": {
                "requestId": "0a1b2c3d",
                "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}:live",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3,
            },
            "requestPayload": event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "7",
                "functionError": "Unhandled",
            },
            "responsePayload": {"errorMessage": message, "errorType": "DependencyUnavailable"},
        }
    )


class Session:
    """moto's session, but Lambda's client is the stubbed one (moto would need Docker)."""

    def __init__(self, real: Any, lambda_client: Any) -> None:
        self.real, self.lambda_client = real, lambda_client

    def client(self, name: str) -> Any:
        return self.lambda_client if name == "lambda" else self.real.client(name)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    use_fake_aws(monkeypatch)
    with in_process_aws():
        real = boto3.session.Session(region_name="us-east-1")
        queue = real.client("sqs").create_queue(QueueName="rtv-HangupFailuresQueue-X")["QueueUrl"]
        outputs = {"HangupFailuresQueueUrl": queue, "FunctionName": FUNCTION}
        template = {
            "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {k: {"Value": v} for k, v in outputs.items()},
        }
        real.client("cloudformation").create_stack(
            StackName="rtv", TemplateBody=json.dumps(template)
        )
        lambda_client = real.client("lambda")
        with Stubber(lambda_client) as stubber:
            session = Session(real, lambda_client)
            session.queue, session.stubber = queue, stubber  # type: ignore[attr-defined]
            yield session
            stubber.assert_no_pending_responses()


def send(aws: Any, **message: Any) -> None:
    aws.real.client("sqs").send_message(QueueUrl=aws.queue, **message)


def queued(aws: Any) -> list[str]:
    """The bodies now visible in the queue (each received once, then made visible again)."""
    sqs = aws.real.client("sqs")
    messages = sqs.receive_message(QueueUrl=aws.queue, MaxNumberOfMessages=10).get("Messages", [])
    for m in messages:
        sqs.change_message_visibility(
            QueueUrl=aws.queue, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )
    return sorted(m["Body"] for m in messages)


def expect_invoke(aws: Any, event: dict[str, Any], payload: Any, error: str = "") -> None:
    body = json.dumps(payload).encode()
    response: dict[str, Any] = {
        "StatusCode": 200,
        "Payload": StreamingBody(io.BytesIO(body), len(body)),
        "ResponseMetadata": {"RequestId": "req-7f3e", "HTTPStatusCode": 200},
    }
    if error:
        response["FunctionError"] = error
    aws.stubber.add_response(
        "invoke",
        response,
        {
            "FunctionName": FUNCTION,
            "Qualifier": "live",  # the alias the schedules target
            "InvocationType": "RequestResponse",  # waits: the message goes only if it ran
            "Payload": json.dumps(event, separators=(",", ":")).encode(),
        },
    )


def replay(aws: Any, *args: str) -> int:
    return replay_hangups.main(["--stack-name", "rtv", *args], session=aws, wait_seconds=0)


# --- Replaying ---------------------------------------------------------------------------------


def test_both_kinds_of_message_are_replayed_and_then_deleted(aws: Any, capsys: Any) -> None:
    send(aws, **scheduler_dead_letter(SCHEDULED))
    send(aws, MessageBody=lambda_failure_record(FAILED))
    expect_invoke(aws, SCHEDULED, {"status": "settled", "call_id": "rtc_scheduled"})
    expect_invoke(aws, FAILED, {"status": "ended", "call_id": "rtc_failed"})

    assert replay(aws) == 0

    assert queued(aws) == []
    out = capsys.readouterr().out.splitlines()
    assert sorted(out[:2]) == [
        "replayed the backstop of call rtc_failed (Lambda: RetriesExhausted): ended",
        "replayed the hangup of call rtc_scheduled (Scheduler: AWS.Scheduler.TargetThrottled):"
        " settled",
    ]
    assert out[2] == "replayed 2, left 0 in the queue"


def test_a_failed_run_leaves_its_message_in_the_queue_visible_at_once(
    aws: Any, capsys: Any
) -> None:
    send(aws, MessageBody=lambda_failure_record(FAILED))
    error = {"errorType": "DependencyUnavailable", "errorMessage": "openai: 503"}
    expect_invoke(aws, FAILED, error, error="Unhandled")

    assert replay(aws) == 1  # make says the replay is not done

    assert queued(aws) == [lambda_failure_record(FAILED)]  # visible again, not after 5 minutes
    out = capsys.readouterr().out
    assert (
        "left the backstop of call rtc_failed (Lambda: RetriesExhausted) in the queue: the"
        " function failed (DependencyUnavailable); its log has request req-7f3e"
    ) in out
    assert "replayed 0, left 1 in the queue" in out


def test_an_invocation_lambda_refuses_leaves_its_message(aws: Any, capsys: Any) -> None:
    send(aws, **scheduler_dead_letter(SCHEDULED))
    aws.stubber.add_client_error("invoke", "TooManyRequestsException", "Rate exceeded", 429)

    assert replay(aws) == 1

    assert len(queued(aws)) == 1
    assert "Lambda refused the invocation (TooManyRequestsException)" in capsys.readouterr().out


def test_a_dry_run_invokes_nothing_and_deletes_nothing(aws: Any, capsys: Any) -> None:
    send(aws, **scheduler_dead_letter(SCHEDULED))
    send(aws, MessageBody=lambda_failure_record(FAILED))

    assert replay(aws, "--dry-run") == 0  # the stubber fails any invoke: none is queued

    assert len(queued(aws)) == 2  # and both visible again at once
    out = capsys.readouterr().out
    assert "would replay the hangup of call rtc_scheduled" in out
    assert "would replay the backstop of call rtc_failed" in out
    assert "dry run: 2 to replay, 0 unreadable; nothing invoked, nothing deleted" in out


@pytest.mark.parametrize(
    ("message", "why"),
    [
        ({"MessageBody": "{not json"}, "its body is not JSON"),
        ({"MessageBody": '["hangup"]'}, "its body is not a JSON object"),
        ({"MessageBody": json.dumps({"action": "mint"})}, "not a hangup or backstop event"),
        (
            {"MessageBody": lambda_failure_record({"action": "hangup", "call_id": "rtc_x"})},
            "its hangup event lacks a call id or user",
        ),
        (
            {"MessageBody": json.dumps(SCHEDULED | {"requestContext": {}})},
            "not a hangup or backstop event",
        ),
        (
            {
                "MessageBody": '{"action":"hangup","call_id":"rtc_x","us',
                "MessageAttributes": {
                    "IS_PAYLOAD_TRUNCATED": {"DataType": "String", "StringValue": "true"}
                },
            },
            "Scheduler truncated its body",
        ),
    ],
)
def test_a_message_that_is_no_hangup_or_backstop_is_left_alone(
    aws: Any, capsys: Any, message: dict[str, Any], why: str
) -> None:
    send(aws, **message)

    assert replay(aws) == 1  # nothing invoked: the stubber has no response queued

    assert queued(aws) == [message["MessageBody"]]
    assert f"in the queue: {why}" in capsys.readouterr().out


def test_nothing_secret_is_printed(aws: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-proj-DoNotPrintThis0123456789"
    send(aws, MessageBody=lambda_failure_record(FAILED, message=f"key {secret} refused"))
    send(aws, **scheduler_dead_letter(SCHEDULED))
    expect_invoke(aws, FAILED, {"errorType": "Oops", "errorMessage": secret}, error="Unhandled")
    expect_invoke(aws, SCHEDULED, {"status": "settled", "call_id": "rtc_scheduled"})

    replay(aws)
    replay(aws, "--dry-run")

    printed = "".join(capsys.readouterr())
    for never in (secret, USER, "Rate exceeded", *FAKE_CREDENTIALS.values()):
        assert never not in printed


# --- One clear line when there is nothing to do, or no way to do it ----------------------------


def test_an_empty_queue_says_so_in_one_line(aws: Any, capsys: Any) -> None:
    assert replay(aws) == 0

    out = capsys.readouterr().out
    assert out == "replay-hangups: the hangup failures queue is empty: nothing to replay\n"


def test_messages_another_run_holds_are_mentioned(aws: Any, capsys: Any) -> None:
    send(aws, MessageBody=lambda_failure_record(FAILED))
    aws.real.client("sqs").receive_message(QueueUrl=aws.queue, VisibilityTimeout=300)

    assert replay(aws) == 0

    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "nothing to replay (1 in flight" in out


def test_a_missing_stack_is_one_clear_line(aws: Any) -> None:
    with pytest.raises(SystemExit) as stop:
        replay_hangups.main(["--stack-name", "nope"], session=aws, wait_seconds=0)

    assert str(stop.value) == "replay-hangups: no stack named nope in us-east-1"


def test_a_stack_without_the_queue_is_one_clear_line(aws: Any) -> None:
    template = {
        "Resources": {"T": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"FunctionName": {"Value": "f"}},
    }
    aws.real.client("cloudformation").create_stack(
        StackName="old", TemplateBody=json.dumps(template)
    )

    with pytest.raises(SystemExit, match=r"^replay-hangups: the stack old has no output Hangup"):
        replay_hangups.main(["--stack-name", "old"], session=aws, wait_seconds=0)


def test_missing_credentials_are_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    for name in list(FAKE_CREDENTIALS) + [
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    with pytest.raises(SystemExit) as stop:
        replay_hangups.main(["--stack-name", "rtv", "--region", "us-east-1"])

    message = str(stop.value)
    assert message.startswith("replay-hangups: no AWS credentials found") and "\n" not in message
    assert capsys.readouterr().out == ""


def test_refused_credentials_are_one_clear_line(aws: Any) -> None:
    cloudformation = aws.real.client("cloudformation")
    with Stubber(cloudformation) as stubber:
        stubber.add_client_error("describe_stacks", "ExpiredToken", "The security token expired")
        session = Session(aws.real, aws.lambda_client)
        session.client = lambda name: cloudformation  # type: ignore[method-assign]

        with pytest.raises(SystemExit, match=r"^replay-hangups: AWS refused these credentials"):
            replay_hangups.main(["--stack-name", "rtv"], session=session, wait_seconds=0)


# --- The program and the stack agree -----------------------------------------------------------


def test_it_reads_the_stacks_outputs_and_runs_what_the_schedules_target() -> None:
    from token_vendor.api import schedule
    from token_vendor.api.app import _is_scheduled

    template = load_template()
    outputs = template["Outputs"]
    assert outputs[replay_hangups.QUEUE_OUTPUT]["Value"] == {"Ref": "HangupFailuresQueue"}
    assert outputs[replay_hangups.FUNCTION_OUTPUT]["Value"] == {"Ref": "TokenFunction"}
    function = template["Resources"]["TokenFunction"]["Properties"]
    assert function["AutoPublishAlias"] == replay_hangups.ALIAS
    # Every kind of schedule the function makes, and each event as the function takes it.
    assert set(replay_hangups.ACTIONS) == set(schedule.KINDS)
    for event in (SCHEDULED, FAILED):
        replayable = replay_hangups.original_event(lambda_failure_record(event))
        assert replayable.event == event and _is_scheduled(replayable.event)


def test_make_runs_it_for_the_named_stack() -> None:
    def dry(*variables: str) -> str:
        return subprocess.run(
            # --no-print-directory: under `make test` this is a sub-make, which would say so.
            [
                "make",
                "-n",
                "--no-print-directory",
                "-o",
                ".venv/.synced",
                "replay-hangups",
                *variables,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    assert 'deploy.replay_hangups --stack-name "rtv" --dry-run' in dry(
        "STACK_NAME=rtv", "DRY_RUN=1"
    )
    assert dry("STACK_NAME=rtv").rstrip().endswith('--stack-name "rtv"')
    help_text = subprocess.run(
        ["make", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "make replay-hangups" in help_text
