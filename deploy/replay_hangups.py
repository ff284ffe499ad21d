"""Replay the hangup failures queue: each scheduled hangup or backstop that did not run is run
again on the stack's token function, synchronously, and deleted from the queue only once that
run succeeded. `--dry-run` says what it would replay and changes nothing.

    python -m deploy.replay_hangups --stack-name realtime-token-vendor [--region eu-west-1]

The queue (the stack's output HangupFailuresQueueUrl) holds two kinds of messages, both made
from a schedule's event `{"action": "hangup" | "backstop", "call_id": ..., "user": ...}`:
- Scheduler's dead letters (it could not deliver the event): the body is the event itself;
- Lambda's on-failure records (the function failed the event three times, or it aged out):
  JSON whose `requestPayload` is the event.
Replaying is safe: both actions are idempotent (a call already ended is settled once, quietly).
Nothing secret is printed: no message body, no user, no error message, only each call's id,
its action and the function's outcome or error type.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any

QUEUE_OUTPUT = "HangupFailuresQueueUrl"
FUNCTION_OUTPUT = "FunctionName"
ALIAS = "live"  # TokenFunction's AutoPublishAlias: the ARN its schedules target
ACTIONS = ("hangup", "backstop")  # what the token function runs for Scheduler
# A message being replayed stays hidden from others this long (each run takes at most the
# function's 10 s); what is left in the queue is made visible again at the end of the run.
VISIBILITY_SECONDS = 300
WAIT_SECONDS = 2  # long polling: an empty answer then means an empty queue
BATCH = 10  # SQS's largest
NAME = "replay-hangups"
# Errors that mean the caller's credentials, not the stack, are at fault.
CREDENTIAL_ERRORS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "AccessDenied",
    "AccessDeniedException",
}


class Unreadable(ValueError):
    """A message that is not a hangup or backstop this program can replay."""


@dataclass(frozen=True)
class Replayable:
    event: dict[str, Any]
    source: str  # where it failed: Scheduler (with its error code) or Lambda (its condition)

    def __str__(self) -> str:
        return f"{self.event['action']} of call {self.event['call_id']} ({self.source})"


@dataclass
class Report:
    replayed: int = 0
    left: int = 0
    would: int = 0
    lines: list[str] = field(default_factory=list)


def original_event(body: str, attributes: dict[str, Any] | None = None) -> Replayable:
    """The event the token function was to run, from either kind of message."""
    attributes = attributes or {}
    if _attribute(attributes, "IS_PAYLOAD_TRUNCATED") == "true":
        raise Unreadable("Scheduler truncated its body")
    try:
        record = json.loads(body)
    except ValueError:
        raise Unreadable("its body is not JSON") from None
    if not isinstance(record, dict):
        raise Unreadable("its body is not a JSON object")
    if "requestPayload" in record:  # Lambda's on-failure destination record
        event = record["requestPayload"]
        context = record.get("requestContext")
        condition = context.get("condition") if isinstance(context, dict) else None
        source = f"Lambda: {condition}" if isinstance(condition, str) else "Lambda"
    else:  # Scheduler's dead letter: the schedule's Input, its error in the attributes
        event = record
        code = _attribute(attributes, "ERROR_CODE")
        source = f"Scheduler: {code}" if code else "Scheduler"
    if not isinstance(event, dict) or event.get("action") not in ACTIONS:
        raise Unreadable("not a hangup or backstop event")
    if "requestContext" in event:  # the function would take it for an HTTP request
        raise Unreadable("not a hangup or backstop event")
    if not all(isinstance(event.get(key), str) and event[key] for key in ("call_id", "user")):
        raise Unreadable(f"its {event['action']} event lacks a call id or user")
    return Replayable(event=event, source=source)


def _attribute(attributes: dict[str, Any], name: str) -> str:
    value = attributes.get(name)
    return str(value.get("StringValue", "")) if isinstance(value, dict) else ""


def invoke(lambda_client: Any, function: str, event: dict[str, Any]) -> tuple[bool, str]:
    """Runs the event on the function and waits: (succeeded, what to say about it)."""
    from botocore.exceptions import ClientError

    try:
        response = lambda_client.invoke(
            FunctionName=function,
            Qualifier=ALIAS,
            InvocationType="RequestResponse",
            Payload=json.dumps(event, separators=(",", ":")).encode(),
        )
    except ClientError as exc:
        return False, f"Lambda refused the invocation ({_code(exc)})"
    request_id = response.get("ResponseMetadata", {}).get("RequestId", "?")
    try:
        result = json.loads(response["Payload"].read() or b"null")
    except ValueError:
        result = None
    if response.get("FunctionError"):
        # The error's type only: its message is the function's, not the operator's to print.
        kind = result.get("errorType") if isinstance(result, dict) else None
        what = str(kind) if isinstance(kind, str) else response["FunctionError"]
        return False, f"the function failed ({what}); its log has request {request_id}"
    status = result.get("status") if isinstance(result, dict) else None
    return True, str(status) if isinstance(status, str) else "done"


def replay(
    sqs: Any,
    lambda_client: Any,
    queue_url: str,
    function: str,
    *,
    dry_run: bool = False,
    wait_seconds: int = WAIT_SECONDS,
) -> Report:
    report = Report()
    handles: dict[str, str] = {}  # every message received: its latest receipt handle
    left: set[str] = set()  # those that stay in the queue
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=BATCH,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=VISIBILITY_SECONDS,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        new = [m for m in batch if m["MessageId"] not in handles]
        for message in batch:
            handles[message["MessageId"]] = message["ReceiptHandle"]
        if not new:  # empty, or only messages seen already (back after their visibility)
            break
        for message in new:
            if _replay_one(message, sqs, lambda_client, queue_url, function, dry_run, report):
                del handles[message["MessageId"]]
            else:
                left.add(message["MessageId"])
    # What stays is visible again at once: for the next run, and for the alarm.
    for message_id in left:
        if message_id in handles:
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=handles[message_id], VisibilityTimeout=0
            )
    return report


def _replay_one(
    message: dict[str, Any],
    sqs: Any,
    lambda_client: Any,
    queue_url: str,
    function: str,
    dry_run: bool,
    report: Report,
) -> bool:
    """True when the message was replayed and deleted."""
    try:
        replayable = original_event(message.get("Body", ""), message.get("MessageAttributes"))
    except Unreadable as exc:
        report.left += 1
        report.lines.append(f"left message {message['MessageId']} in the queue: {exc}")
        return False
    if dry_run:
        report.would += 1
        report.lines.append(f"would replay the {replayable}")
        return False
    succeeded, outcome = invoke(lambda_client, function, replayable.event)
    if not succeeded:
        report.left += 1
        report.lines.append(f"left the {replayable} in the queue: {outcome}")
        return False
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    report.replayed += 1
    report.lines.append(f"replayed the {replayable}: {outcome}")
    return True


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if _code(exc) == "ValidationError" and "does not exist" in str(exc):
            region = cloudformation.meta.region_name
            raise SystemExit(f"{NAME}: no stack named {stack_name} in {region}") from None
        raise
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = [k for k in (QUEUE_OUTPUT, FUNCTION_OUTPUT) if not outputs.get(k)]
    if missing:
        raise SystemExit(
            f"{NAME}: the stack {stack_name} has no output {', '.join(missing)}; "
            "deploy this version of the template first (make deploy)"
        )
    return outputs


def in_flight(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) or type(exc).__name__


def run(args: argparse.Namespace, session: Any, wait_seconds: int = WAIT_SECONDS) -> int:
    outputs = stack_outputs(session.client("cloudformation"), args.stack_name)
    queue_url, function = outputs[QUEUE_OUTPUT], outputs[FUNCTION_OUTPUT]
    sqs = session.client("sqs")
    report = replay(
        sqs,
        session.client("lambda"),
        queue_url,
        function,
        dry_run=args.dry_run,
        wait_seconds=wait_seconds,
    )
    for line in report.lines:
        print(line)
    if not report.lines:
        hidden = in_flight(sqs, queue_url)
        busy = (
            f" ({hidden} in flight: another replay running, or one that stopped half-way;"
            f" they are back within {VISIBILITY_SECONDS // 60} minutes)"
            if hidden
            else ""
        )
        print(f"{NAME}: the hangup failures queue is empty: nothing to replay{busy}")
        return 0
    if args.dry_run:
        print(
            f"dry run: {report.would} to replay, {report.left} unreadable;"
            " nothing invoked, nothing deleted"
        )
        return 0
    print(f"replayed {report.replayed}, left {report.left} in the queue")
    return 1 if report.left else 0


def main(
    argv: list[str] | None = None, session: Any = None, wait_seconds: int = WAIT_SECONDS
) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack-name", required=True)
    parser.add_argument("--region")
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would be replayed; change nothing"
    )
    args = parser.parse_args(argv)
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    try:
        if session is None:
            import boto3

            session = boto3.session.Session(region_name=args.region)
        return run(args, session, wait_seconds)
    except (NoCredentialsError, PartialCredentialsError):
        raise SystemExit(
            f"{NAME}: no AWS credentials found (set AWS_PROFILE, or run aws sso login / "
            "aws configure)"
        ) from None
    except NoRegionError:
        raise SystemExit(f"{NAME}: no AWS region: pass --region or set AWS_REGION") from None
    except ClientError as exc:
        code = _code(exc)
        if code in CREDENTIAL_ERRORS:
            raise SystemExit(
                f"{NAME}: AWS refused these credentials ({code}): are they current, and "
                "allowed to read the stack, the queue and invoke its function?"
            ) from None
        if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
            raise SystemExit(f"{NAME}: the stack's hangup failures queue does not exist") from None
        raise SystemExit(f"{NAME}: AWS answered {code}") from None
    except BotoCoreError as exc:  # no endpoint, a profile not found, ...: no secret in these
        raise SystemExit(f"{NAME}: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
