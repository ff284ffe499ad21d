"""The AWS side of the local stack: moto's server, provisioned as template.yaml would be.

moto runs as its own process (the function reaches it over HTTP through AWS_ENDPOINT_URL,
as it reaches DynamoDB and Secrets Manager in production); this module provisions it.
"""

from __future__ import annotations

import json
import secrets
import string
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.config
import botocore.session

if TYPE_CHECKING:
    from devstack.cloudfront import SecretReference

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


def create_generated_secret(
    endpoint_url: str, secret_id: str, template_path: Path, resource: str
) -> None:
    """A secret the template generates (GenerateSecretString), generated as its rules say:
    its length, and no punctuation when it excludes it."""
    from devstack.template import load_template

    rules = load_template(template_path)["Resources"][resource]["Properties"]
    rules = rules["GenerateSecretString"]
    alphabet = string.ascii_letters + string.digits
    if not rules.get("ExcludePunctuation"):
        alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
    length = int(rules.get("PasswordLength", 32))
    value = "".join(secrets.choice(alphabet) for _ in range(length))
    create_secret(endpoint_url, secret_id, value)


def secret_resolver(endpoint_url: str) -> Callable[[SecretReference], str]:
    """What CloudFormation does with a `{{resolve:secretsmanager:...}}` reference, against
    this moto: the version asked for (by id or stage, else AWSCURRENT), a JSON key if named."""

    def resolve(reference: SecretReference) -> str:
        asked: dict[str, str] = {"SecretId": reference.secret_id}
        if reference.version_id:
            asked["VersionId"] = reference.version_id
        elif reference.version_stage:
            asked["VersionStage"] = reference.version_stage
        value = str(
            client("secretsmanager", endpoint_url).get_secret_value(**asked)["SecretString"]
        )
        return str(json.loads(value)[reference.json_key]) if reference.json_key else value

    return resolve


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
    origin_secret_id: str | None = None,
) -> None:
    """`origin_secret_id`: the secret the page's distribution sends the API (the template's
    OriginVerifySecret), generated by its rules."""
    create_quota_table(endpoint_url, table, template_path)
    create_secret(endpoint_url, secret_id, secret_value)
    if schedule_group is not None:
        create_schedule_group(endpoint_url, schedule_group, template_path)
    if origin_secret_id is not None:
        create_generated_secret(endpoint_url, origin_secret_id, template_path, "OriginVerifySecret")
