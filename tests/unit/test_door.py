"""The door's secret over time (api/door.py), against moto's Secrets Manager with a test's
clock: when it is read again, what a rotation looks like from a warm container, and what a
failure leaves it with."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from token_vendor.api.door import FrontDoor
from token_vendor.core.errors import DependencyMisconfigured, DependencyUnavailable, WrongDoor

from tests.support.aws import Aws

NAME = "origin-verify"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def value() -> str:
    return secrets.token_urlsafe(48)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reads(aws: Aws) -> list[str]:
    seen: list[str] = []
    aws.secretsmanager.meta.events.register(
        "before-parameter-build.secrets-manager.GetSecretValue",
        lambda params, **_: seen.append(params.get("VersionStage", "")),
    )
    return seen


def door(aws: Aws, clock: Clock) -> FrontDoor:
    return FrontDoor(NAME, aws.secretsmanager, clock=clock)


def test_a_value_put_since_the_last_read_opens_only_after_the_reread_interval(
    aws: Aws, clock: Clock, reads: list[str]
) -> None:
    old, new = value(), value()
    aws.secretsmanager.create_secret(Name=NAME, SecretString=old)
    front = door(aws, clock)
    front.check(old)
    aws.secretsmanager.put_secret_value(SecretId=NAME, SecretString=new)

    clock.now += 10
    with pytest.raises(WrongDoor):  # the new value, before a re-read is allowed
        front.check(new)
    clock.now += 21
    front.check(new)  # read again: current is the new value
    front.check(old)  # and the old one is AWSPREVIOUS
    assert reads == ["AWSCURRENT", "AWSPREVIOUS", "AWSCURRENT", "AWSPREVIOUS"]


def test_a_flood_of_wrong_values_reads_the_secret_at_most_once_per_interval(
    aws: Aws, clock: Clock, reads: list[str]
) -> None:
    aws.secretsmanager.create_secret(Name=NAME, SecretString=value())
    front = door(aws, clock)
    for _ in range(50):
        with pytest.raises(WrongDoor):
            front.check(value())
    assert len(reads) == 2  # the first read (both stages), nothing more within 30 s


def test_the_values_are_read_again_every_five_minutes(
    aws: Aws, clock: Clock, reads: list[str]
) -> None:
    current = value()
    aws.secretsmanager.create_secret(Name=NAME, SecretString=current)
    front = door(aws, clock)
    front.check(current)
    clock.now += 299
    front.check(current)
    assert reads == ["AWSCURRENT"]  # the previous version only when a value does not match
    clock.now += 2
    front.check(current)
    assert reads == ["AWSCURRENT", "AWSCURRENT"]


def test_a_warm_door_keeps_its_values_when_secrets_manager_fails(aws: Aws, clock: Clock) -> None:
    current = value()
    aws.secretsmanager.create_secret(Name=NAME, SecretString=current)
    front = door(aws, clock)
    front.check(current)

    def down(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://secretsmanager")

    aws.secretsmanager.meta.events.register("before-send.secrets-manager.GetSecretValue", down)
    clock.now += 301
    front.check(current)  # served from what it had
    front.invalidate()  # a SnapStart restore: nothing kept, so now it must refuse
    with pytest.raises(DependencyUnavailable):
        front.check(current)


@pytest.mark.parametrize("stored", [" ", "x" * 31, "has a space" * 4, "ünïcödé" * 8])
def test_a_current_value_no_header_could_carry_is_misconfigured(
    aws: Aws, clock: Clock, stored: str
) -> None:
    aws.secretsmanager.create_secret(Name=NAME, SecretString=stored)
    with pytest.raises(DependencyMisconfigured) as refused:
        door(aws, clock).check(stored)
    assert stored.strip() == "" or stored not in str(refused.value)


def test_a_missing_header_is_refused_without_reading_anything(
    aws: Aws, clock: Clock, reads: list[str]
) -> None:
    front = door(aws, clock)  # the secret does not even exist
    for presented in (None, ""):
        with pytest.raises(WrongDoor) as refused:
            front.check(presented)
        assert refused.value.reason == "missing"
    assert reads == []


def test_the_door_never_shows_its_values(aws: Aws, clock: Clock) -> None:
    current = value()
    aws.secretsmanager.create_secret(Name=NAME, SecretString=current)
    front = door(aws, clock)
    front.check(current)
    assert current not in repr(front) and current not in str(front)
