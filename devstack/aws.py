"""The AWS side of the local stack: moto's server, provisioned as template.yaml would be.

moto runs as its own process (the function reaches it over HTTP through AWS_ENDPOINT_URL,
as it reaches DynamoDB and Secrets Manager in production); this module provisions it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import botocore.config
import botocore.session

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
# moto accepts any credentials; these make sure no real ones are ever used against it.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def moto_command(host: str, port: int) -> list[str]:
    # moto's own server, one request at a time: DynamoDB's atomic updates under concurrency.
    return [sys.executable, "-m", "devstack.moto_server", "-H", host, "-p", str(port)]


def client(
    service: str, endpoint_url: str, region: str = REGION, *, retries: int | None = None
) -> Any:
    """`retries`: total attempts per call (botocore's default when None)."""
    config = (
        None if retries is None else botocore.config.Config(retries={"total_max_attempts": retries})
    )
    return botocore.session.get_session().create_client(
        service,
        region_name=region,
        endpoint_url=endpoint_url,
        config=config,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
    )


def create_quota_table(endpoint_url: str, table: str, template_path: Path) -> None:
    """The table exactly as the template defines it (keys, billing, TTL)."""
    from devstack.template import load_template, quota_table_definition

    definition = dict(quota_table_definition(load_template(template_path)))
    ttl_attribute = definition.pop("ttl_attribute", None)
    dynamodb = client("dynamodb", endpoint_url)
    dynamodb.create_table(TableName=table, **definition)
    if ttl_attribute:
        dynamodb.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
        )


def create_secret(endpoint_url: str, secret_id: str, value: str) -> None:
    client("secretsmanager", endpoint_url).create_secret(Name=secret_id, SecretString=value)


def create_schedule_group(endpoint_url: str, name: str, template_path: Path) -> bool:
    """The group the function's call deadlines go in, if the template declares one."""
    from devstack.template import load_template, schedule_group_definition

    definition = schedule_group_definition(load_template(template_path))
    if definition is None:
        return False
    client("scheduler", endpoint_url).create_schedule_group(Name=name, **definition)
    return True


def provision(
    endpoint_url: str,
    *,
    table: str,
    secret_id: str,
    secret_value: str,
    template_path: Path,
    schedule_group: str | None = None,
) -> None:
    create_quota_table(endpoint_url, table, template_path)
    create_secret(endpoint_url, secret_id, secret_value)
    if schedule_group is not None:
        create_schedule_group(endpoint_url, schedule_group, template_path)
