"""The spend budget at the calls route, through the real handler (moto, the fake internet):
a spent budget refuses new calls with 429 before anything is spent, the listing says what is
left, and a watcher that cannot be started never fails a call."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from token_vendor.core.ids import CallId, UserId

from devstack.lambda_events import LambdaContext, http_event
from tests.support.aws import Aws, RawBody
from tests.support.env import ORIGIN
from tests.support.handler import (
    expect_watcher_start,
    invoke,
    listing,
    mint_units,
    schedules,
    spend,
)
from tests.support.identity import Issuer
from tests.support.internet import OFFER_SDP, FakeInternet


@pytest.fixture
def spend_handler(make_handler: Any) -> Any:
    return make_handler(SPEND_LIMITS="usd/day=1.00,global:usd/day=5.00")


def test_a_spent_budget_refuses_the_next_call_before_anything_is_spent(
    place: Any, spend_handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    spend(aws, "user-1", 1_000_000, "usd/day=1.00")
    units = mint_units(aws)

    refused = place(with_handler=spend_handler)

    assert refused.status == 429
    assert refused.json["type"].endswith("spend-limit")
    assert refused.json["policy"] == "spend-user"
    assert refused.json["detail"].startswith("Your budget for calls today is used up.")
    retry = int(refused.header("retry-after") or "0")
    assert 0 < retry <= 86400 and retry == refused.json["retry_after"]
    assert refused.json["error"]["code"]  # OpenAI's envelope too, for the SDKs
    # Nothing was taken: no mint unit, no upstream call, no reservation (the admission ran
    # beside the spend's read and gave back what it took).
    assert mint_units(aws) == units and internet.live_calls() == []
    assert listing(spend_handler, issuer).json["minutes_left_today"] == 60
    # Another user has a budget of their own.
    assert place(user="user-2", with_handler=spend_handler).status == 201


def test_the_global_kill_switch_refuses_everyone(
    place: Any, spend_handler: Any, aws: Aws, internet: FakeInternet
) -> None:
    # Charged by watchers with the same SPEND_LIMITS (everyone's day is kept only with a
    # global limit).
    limits = "usd/day=1.00,global:usd/day=5.00"
    spend(aws, "heavy", 900_000, limits)
    for n in range(5):
        spend(aws, f"user-{n + 10}", 820_000, limits)  # 4.1 + 0.9 = 5.00 USD across users
    refused = place(user="fresh", with_handler=spend_handler)
    assert refused.status == 429 and refused.json["policy"] == "spend-global"
    assert refused.json["detail"].startswith("The service's budget for calls today is used up.")
    assert internet.live_calls() == []


@contextmanager
def spend_unreadable(aws: Aws) -> Iterator[list[str]]:
    """Every spend read (BatchGetItem) is refused by DynamoDB; the other operations go on.
    Yields the refused operations' names."""
    refused: list[str] = []

    def refuse(request: Any, **_: Any) -> AWSResponse | None:
        if not request.headers.get("X-Amz-Target", b"").endswith(b"BatchGetItem"):
            return None
        refused.append("BatchGetItem")
        body = b'{"__type":"com.amazonaws.dynamodb.v20120810#AccessDeniedException","message":"no"}'
        return AWSResponse(request.url, 400, {}, RawBody(body))

    aws.dynamodb.meta.events.register_first("before-send.dynamodb", refuse)
    try:
        yield refused
    finally:
        aws.dynamodb.meta.events.unregister("before-send.dynamodb", refuse)


def test_the_listing_reports_the_callers_own_spend_left_today(
    spend_handler: Any, issuer: Issuer, aws: Aws
) -> None:
    limits = "usd/day=1.00,global:usd/day=5.00"  # as the watchers charge it
    spend(aws, "user-1", 250_000, limits)
    spend(aws, "someone-else", 4_500_000, limits)  # everyone's day: 4.75 of the global 5.00
    listed = listing(spend_handler, issuer).json
    # The user's budget, not the service's: no user learns what the whole service has left.
    assert listed["spent_today_usd"] == 0.25 and listed["spend_left_today_usd"] == 0.75


def test_without_spend_limits_the_listing_reads_no_spend(
    handler: Any, issuer: Issuer, aws: Aws
) -> None:
    with spend_unreadable(aws) as refused:
        listed = listing(handler, issuer)
    assert listed.status == 200 and refused == []
    assert "spent_today_usd" not in listed.json and "spend_left_today_usd" not in listed.json


def test_an_unreadable_spend_refuses_the_call_with_503_and_keeps_nothing(
    place: Any, spend_handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    assert place(with_handler=spend_handler, user="warmup").status == 201  # container built
    units = mint_units(aws)
    with spend_unreadable(aws) as refused:
        answer = place(user="user-3", with_handler=spend_handler)
    assert answer.status == 503 and refused == ["BatchGetItem"]
    assert len(internet.live_calls()) == 1  # the warm-up's: OpenAI was not called
    # The admission ran beside the read: its mint unit and its reservation came back.
    assert mint_units(aws) == units
    assert listing(spend_handler, issuer, "user-3").json["minutes_left_today"] == 60


def test_a_slow_spend_read_leaves_time_to_give_back_what_the_admission_took(
    place: Any, spend_handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    """The spend read hangs; every DynamoDB write is slow (a struggling table). The call is
    refused (503) soon enough that the reservation and the mint unit still come back inside
    the Lambda's time, rather than the wait for the read using all of it."""
    assert place(with_handler=spend_handler, user="warmup").status == 201  # container built
    units = mint_units(aws)
    unblock = threading.Event()

    def struggle(request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        if target.endswith(b"BatchGetItem"):
            unblock.wait(15)  # the spend read: no answer while the request lasts
        elif target.endswith(b"UpdateItem"):
            time.sleep(0.3)

    aws.dynamodb.meta.events.register_first("before-send.dynamodb", struggle)
    lambda_seconds = 8.0  # the least a call is placed with: 6 s
    headers = {
        "authorization": f"Bearer {issuer.token('user-3')}",
        "origin": ORIGIN,
        "content-type": "application/sdp",
    }
    event = http_event("POST", "/v1/realtime/calls", headers=headers, body=OFFER_SDP)
    try:
        started = time.monotonic()
        answer = invoke(spend_handler, event, LambdaContext(int(lambda_seconds * 1000)))
        took = time.monotonic() - started
    finally:
        unblock.set()
        aws.dynamodb.meta.events.unregister("before-send.dynamodb", struggle)
    assert answer.status == 503, answer.json
    assert took < lambda_seconds - 0.5, took  # Lambda would have cut it off (and its writes)
    assert len(internet.live_calls()) == 1  # the warm-up's: OpenAI was not called
    assert mint_units(aws) == units
    assert listing(spend_handler, issuer, "user-3").json["minutes_left_today"] == 60


def test_each_placed_call_starts_its_watcher_and_a_failed_start_ends_the_call(
    make_watched_handler: Any, place: Any, aws: Aws, internet: FakeInternet, issuer: Issuer
) -> None:
    """Fail closed: a call its watcher cannot start for is hung up at once and the caller
    gets a 503, with the slot, the minutes, the mint unit and the schedules given back."""
    handler, lambda_client = make_watched_handler()
    with Stubber(lambda_client) as stub:
        expect_watcher_start(stub)
        placed = place(with_handler=handler)
        stub.assert_no_pending_responses()  # exactly one asynchronous start, by name
        units = mint_units(aws)
        stub.add_client_error("invoke", "TooManyRequestsException", http_status_code=429)
        refused = place(user="user-2", with_handler=handler)
    assert placed.status == 201
    assert refused.status == 503 and refused.json["type"].endswith("dependency-unavailable")
    assert len(internet.live_calls()) == 1 and len(internet.hung_up) == 1  # hung up at once
    assert mint_units(aws) == units
    assert listing(handler, issuer, "user-2").json["minutes_left_today"] == 60
    assert sorted(s["Name"].split("-")[0] for s in schedules(aws)) == ["call", "watch"]  # placed's


def test_an_operator_may_let_a_call_whose_watcher_could_not_start_run(
    make_watched_handler: Any, place: Any, internet: FakeInternet
) -> None:
    handler, lambda_client = make_watched_handler({"UNWATCHED_CALLS": "allow"})
    with Stubber(lambda_client) as stub:
        stub.add_client_error("invoke", "TooManyRequestsException", http_status_code=429)
        placed = place(with_handler=handler)
    assert placed.status == 201 and len(internet.live_calls()) == 1


def test_the_watch_event_names_the_call_the_profile_and_its_deadline() -> None:
    from token_vendor.core.jobs import watch_event

    event = watch_event(
        call_id=CallId("rtc_1"),
        user=UserId("u"),
        profile="assistant",
        session={"type": "realtime"},
        on_session_change="restore",
        ends_at=1800.0,
    )
    assert event == {
        "action": "watch",
        "call_id": "rtc_1",
        "user": "u",
        "profile": "assistant",
        "session": {"type": "realtime"},
        "on_session_change": "restore",
        "ends_at": 1800.0,
        "handovers": 0,
    }
    assert "token" not in event  # only a hand-over names the successor's lease token
    assert json.loads(json.dumps(event)) == event
