"""Which table: `--table NAME`, `--stack NAME` (its QuotaTableName output), or `--local` (the
local stack's moto, from .devstack/state.json); and a DynamoDB client for it, with one clear
line for each way that can fail."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLE_OUTPUT = "QuotaTableName"
STATE_FILE = Path(__file__).resolve().parents[1] / ".devstack" / "state.json"
LOCAL_TABLE = "devstack-quota"  # devstack.stack.TABLE
LOCAL_CREDENTIALS = {  # moto's: devstack.aws.FAKE_CREDENTIALS
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}
CREDENTIAL_ERRORS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "AccessDeniedException",
}


class OpsError(Exception):
    """A failure the operator can act on: one line, exit status 2."""


@dataclass(frozen=True)
class Target:
    client: Any  # DynamoDB
    table: str


def connect(
    *,
    table: str | None,
    stack: str | None,
    local: bool,
    region: str | None,
    endpoint: str | None,
    session: Any = None,
) -> Target:
    import boto3
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    if sum(bool(x) for x in (table, stack, local)) != 1:
        raise OpsError("say which table: one of --table NAME, --stack NAME or --local")
    options: dict[str, Any] = {}
    if local:
        state = _local_state()
        endpoint = endpoint or state["urls"]["aws"]
        table = LOCAL_TABLE
        options = dict(LOCAL_CREDENTIALS)
        region = region or "us-east-1"
    session = session or boto3.session.Session(region_name=region, **options)
    try:
        if stack:
            table = _stack_table(session.client("cloudformation", endpoint_url=endpoint), stack)
        assert table is not None
        client = session.client("dynamodb", endpoint_url=endpoint)
        _check_table(client, table)
    except NoCredentialsError:
        raise OpsError(
            "no AWS credentials found (set AWS_PROFILE, or run aws sso login / aws configure)"
        ) from None
    except NoRegionError:
        raise OpsError("no AWS region: pass --region or set AWS_REGION") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in CREDENTIAL_ERRORS:
            raise OpsError(f"AWS refused these credentials ({code})") from None
        raise OpsError(f"AWS answered {code}: {exc}") from None
    return Target(client, table)


def _local_state() -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        raise OpsError("no local stack is running (start it with `make dev`)") from None
    return state


def _stack_table(cloudformation: Any, stack: str) -> str:
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            region = cloudformation.meta.region_name
            raise OpsError(f"no stack named {stack} in {region}") from None
        raise
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    if not outputs.get(TABLE_OUTPUT):
        raise OpsError(f"the stack {stack} has no output {TABLE_OUTPUT}: is it this service's?")
    return str(outputs[TABLE_OUTPUT])


def _check_table(client: Any, table: str) -> None:
    """The table exists and is keyed as this service's (`pk`, a string, alone)."""
    from botocore.exceptions import ClientError

    try:
        described = client.describe_table(TableName=table)["Table"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            region = client.meta.region_name
            raise OpsError(f"no table named {table} in {region}") from None
        raise
    keys = [(k["AttributeName"], k["KeyType"]) for k in described["KeySchema"]]
    if keys != [("pk", "HASH")]:
        raise OpsError(f"the table {table} is not this service's (its key is not `pk` alone)")
