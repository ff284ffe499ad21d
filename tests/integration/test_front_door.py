"""The API's one public door, through the real handler and moto's Secrets Manager: with the
page's distribution in front (ORIGIN_SECRET_ID set, as template.yaml sets it by default), a
request without the distribution's header is a 403 problem that spends nothing: no token
read, no key set fetched, no quota counted, no OpenAI request, not even a secret read."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from devstack.lambda_events import LambdaContext, http_event
from tests.support.aws import Aws, count_aws_calls
from tests.support.env import ORIGIN
from tests.support.handler import assert_problem, invoke
from tests.support.identity import Issuer
from tests.support.internet import OFFER_SDP, FakeInternet
from tests.support.logs import LogCapture

DOOR_SECRET = "origin-verify"
QUOTAS = "50/minute,500/day"  # room for every request these tests make


def new_value() -> str:
    return secrets.token_urlsafe(48)  # 64 characters, as the template generates


@pytest.fixture
def door_value(aws: Aws) -> str:
    value = new_value()
    aws.secretsmanager.create_secret(Name=DOOR_SECRET, SecretString=value)
    return value


@pytest.fixture
def door_handler(make_handler: Any, door_value: str) -> Any:
    return make_handler(ORIGIN_SECRET_ID=DOOR_SECRET, QUOTAS=QUOTAS)


def request(
    handler: Any,
    issuer: Issuer,
    door: str | None,
    path: str = "/v1/realtime/client_secrets",
    method: str = "POST",
    body: str | None = "{}",
    content_type: str = "application/json",
) -> Any:
    headers = {
        "authorization": f"Bearer {issuer.token()}",
        "origin": ORIGIN,
        "content-type": content_type,
    }
    if door is not None:
        headers["x-origin-verify"] = door
    return invoke(handler, http_event(method, path, headers=headers, body=body))


def nothing_spent(aws: Aws, internet: FakeInternet) -> None:
    assert aws.quota_items() == [], "a unit was counted for a request that skipped the door"
    assert internet.requests == [], "the key set or OpenAI was asked"


@pytest.mark.parametrize(
    ("path", "method", "body", "content_type"),
    [
        ("/v1/realtime/client_secrets", "POST", "{}", "application/json"),
        ("/v1/realtime/calls", "POST", OFFER_SDP, "application/sdp"),
        ("/v1/realtime/calls", "GET", None, "application/json"),
        ("/v1/realtime/calls/rtc_1/hangup", "POST", None, "application/json"),
        ("/openapi.json", "GET", None, "application/json"),
        ("/v1/nowhere", "GET", None, "application/json"),
    ],
)
def test_a_request_that_skipped_the_distribution_is_403_and_spends_nothing(
    door_handler: Any,
    issuer: Issuer,
    aws: Aws,
    internet: FakeInternet,
    path: str,
    method: str,
    body: str | None,
    content_type: str,
) -> None:
    calls = count_aws_calls(aws)

    reply = request(door_handler, issuer, None, path, method, body, content_type)

    assert calls == {"dynamodb": 0, "secretsmanager": 0}  # the cheapest refusal there is
    problem = assert_problem(reply, 403, "direct-access")
    assert problem["error"]["type"] == "permission_error"
    assert "www-authenticate" not in {k.lower() for k in reply.headers}
    nothing_spent(aws, internet)


def test_a_wrong_value_is_403_and_spends_nothing_but_one_secret_read(
    door_handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet, door_value: str
) -> None:
    calls = count_aws_calls(aws)
    for guess in (door_value[:-1], door_value + "x", door_value.upper(), "x" * 64):
        reply = request(door_handler, issuer, guess)
        assert_problem(reply, 403, "direct-access")
    # Read once (current and previous version) for the first request; a flood of wrong
    # values does not read it again.
    assert calls == {"dynamodb": 0, "secretsmanager": 2}
    nothing_spent(aws, internet)


def test_through_the_door_every_route_works_as_before(
    door_handler: Any, issuer: Issuer, internet: FakeInternet, door_value: str
) -> None:
    assert request(door_handler, issuer, door_value).status == 200
    placed = request(
        door_handler, issuer, door_value, "/v1/realtime/calls", body=OFFER_SDP,
        content_type="application/sdp",
    )  # fmt: skip
    assert placed.status == 201, placed.body
    listed = request(door_handler, issuer, door_value, "/v1/realtime/calls", "GET", None)
    assert listed.status == 200 and len(listed.json["data"]) == 1
    assert internet.minted and internet.calls


def test_the_previous_value_still_opens_the_door_after_a_rotation(
    door_handler: Any, make_handler: Any, issuer: Issuer, aws: Aws, door_value: str
) -> None:
    """Rotation (docs/deploy.md): the new value is put in the secret, every container reads
    it within 5 minutes, and only then does CloudFront send it; the old one works meanwhile."""
    assert request(door_handler, issuer, door_value).status == 200  # read: current only
    rotated = new_value()
    aws.secretsmanager.put_secret_value(SecretId=DOOR_SECRET, SecretString=rotated)

    # Not read yet by this warm container: the old value still opens; the new one is read
    # at its first appearance only after the re-read interval (tests/unit/test_door.py).
    assert request(door_handler, issuer, door_value).status == 200

    fresh = make_handler(ORIGIN_SECRET_ID=DOOR_SECRET, QUOTAS=QUOTAS)  # a container started since
    assert request(fresh, issuer, rotated).status == 200
    assert request(fresh, issuer, door_value).status == 200  # AWSPREVIOUS


def test_an_unusable_secret_fails_closed_with_503_and_an_error_that_quotes_nothing(
    make_handler: Any, aws: Aws, issuer: Issuer, internet: FakeInternet, logs: LogCapture
) -> None:
    aws.secretsmanager.create_secret(Name=DOOR_SECRET, SecretString="short-and-guessable")
    handler = make_handler(ORIGIN_SECRET_ID=DOOR_SECRET)

    reply = request(handler, issuer, "short-and-guessable")

    assert_problem(reply, 503, "dependency-unavailable")
    nothing_spent(aws, internet)
    (error,) = [r for r in logs.records() if r.get("level") == "ERROR"]
    assert error["dependency"] == "origin_secret" and DOOR_SECRET in error["reason"]
    assert "short-and-guessable" not in logs.text


def test_secrets_manager_down_on_a_cold_start_is_503_never_an_open_door(
    door_handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet, door_value: str
) -> None:
    def down(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://secretsmanager.us-east-1")

    aws.secretsmanager.meta.events.register("before-send.secrets-manager.GetSecretValue", down)

    reply = request(door_handler, issuer, door_value)

    assert_problem(reply, 503, "dependency-unavailable")
    nothing_spent(aws, internet)


def test_the_value_is_never_logged_nor_answered(
    door_handler: Any, issuer: Issuer, door_value: str, logs: LogCapture
) -> None:
    logs.debug()
    replies = [
        request(door_handler, issuer, door_value),
        request(door_handler, issuer, door_value[:-1] + "!"),
        request(door_handler, issuer, None),
    ]

    assert [r.status for r in replies] == [200, 403, 403]
    refusals = [r for r in logs.records() if r.get("outcome") == "wrong_door"]
    assert [r["reason"] for r in refusals] == ["mismatch", "missing"]
    for text in [logs.text, *(json.dumps(r.headers) + r.body for r in replies)]:
        assert door_value not in text and door_value[:-1] not in text


def test_scheduled_hangups_are_not_http_and_need_no_door(door_handler: Any, aws: Aws) -> None:
    read: list[str] = []
    aws.secretsmanager.meta.events.register(
        "before-parameter-build.secrets-manager.GetSecretValue",
        lambda params, **_: read.append(params["SecretId"]),
    )
    event = {"action": "hangup", "call_id": "rtc_gone", "user": "a" * 32}
    result = door_handler(event, LambdaContext())

    assert result["status"] == "already-ended"
    assert DOOR_SECRET not in read


def test_without_a_distribution_the_apis_own_url_is_the_door(handler: Any, issuer: Issuer) -> None:
    """ApiDoor=execute-api: no ORIGIN_SECRET_ID, and the header means nothing."""
    assert request(handler, issuer, None).status == 200
    assert request(handler, issuer, "anything").status == 200
