"""The AWS account as the deploy's preflight reads it: who we are, the stack as it stands,
Lambda's concurrency, and the stack's secrets. Reads only; a secret's value is returned to
the preflight to check its shape and is never printed (deploy/preflight.py).

Rights it needs, all read-only: sts:GetCallerIdentity, cloudformation:DescribeStacks,
lambda:GetAccountSettings, lambda:GetFunctionConcurrency, secretsmanager:GetSecretValue on
the stack's two secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError


class AccountError(Exception):
    """The account could not be read; the message names the call and AWS's error code."""


@dataclass(frozen=True)
class StackState:
    status: str
    parameters: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Concurrency:
    quota: int
    unreserved: int


class Account:
    """Adapter over a boto3 session (its credentials and region, as any AWS command)."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._clients: dict[str, Any] = {}

    @property
    def region(self) -> str | None:
        region: str | None = self._session.region_name
        return region

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(service)
        return self._clients[service]

    def identity(self) -> str:
        """The account's id."""
        answer = _call("sts:GetCallerIdentity", self._client("sts").get_caller_identity)
        return str(answer["Account"])

    def stack(self, name: str) -> StackState | None:
        """The stack as it stands, or None when there is none (a first deploy)."""
        try:
            stacks = self._client("cloudformation").describe_stacks(StackName=name)["Stacks"]
        except ClientError as exc:
            if "does not exist" in str(exc.response.get("Error", {}).get("Message", "")):
                return None
            raise AccountError(f"cloudformation:DescribeStacks: {_code(exc)}") from None
        except BotoCoreError as exc:
            raise AccountError(f"cloudformation:DescribeStacks: {type(exc).__name__}") from None
        stack = stacks[0]
        return StackState(
            status=str(stack["StackStatus"]),
            parameters={
                p["ParameterKey"]: str(p.get("ParameterValue", ""))
                for p in stack.get("Parameters", [])
            },
            outputs={o["OutputKey"]: str(o["OutputValue"]) for o in stack.get("Outputs", [])},
        )

    def concurrency(self) -> Concurrency:
        limit = _call("lambda:GetAccountSettings", self._client("lambda").get_account_settings)[
            "AccountLimit"
        ]
        return Concurrency(
            quota=int(limit["ConcurrentExecutions"]),
            unreserved=int(limit["UnreservedConcurrentExecutions"]),
        )

    def reserved(self, function: str) -> int:
        """What `function` reserves now (0: none, or no such function)."""
        try:
            answer = self._client("lambda").get_function_concurrency(FunctionName=function)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return 0
            raise AccountError(f"lambda:GetFunctionConcurrency: {_code(exc)}") from None
        except BotoCoreError as exc:
            raise AccountError(f"lambda:GetFunctionConcurrency: {type(exc).__name__}") from None
        return int(answer.get("ReservedConcurrentExecutions") or 0)

    def secret(self, secret_id: str) -> str | None:
        """The secret's current string, or None when the secret is gone (deleted, or
        scheduled for deletion)."""
        try:
            answer = self._client("secretsmanager").get_secret_value(SecretId=secret_id)
        except ClientError as exc:
            if _code(exc) in ("ResourceNotFoundException", "InvalidRequestException"):
                return None
            raise AccountError(f"secretsmanager:GetSecretValue: {_code(exc)}") from None
        except BotoCoreError as exc:
            raise AccountError(f"secretsmanager:GetSecretValue: {type(exc).__name__}") from None
        return str(answer.get("SecretString") or "")


def _call(name: str, call: Any) -> Any:
    try:
        return call()
    except NoCredentialsError:
        raise AccountError(f"{name}: no AWS credentials") from None
    except ClientError as exc:
        raise AccountError(f"{name}: {_code(exc)}") from None
    except BotoCoreError as exc:
        raise AccountError(f"{name}: {type(exc).__name__}") from None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "error"))
