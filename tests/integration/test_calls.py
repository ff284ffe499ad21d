"""Server-owned calls through the real handler: POST/GET /v1/realtime/calls, the hangup route,
and the scheduled hangup event, against moto (DynamoDB, Secrets Manager, Scheduler) and the
fake OpenAI. Every status of the new routes, and what each leaves behind."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from bench import report
from devstack.lambda_events import LambdaContext, http_event
from tests.support.aws import Aws, count_aws_calls
from tests.support.env import ORIGIN
from tests.support.handler import (
    CALLS,
    Reply,
    assert_problem,
    call_id_of,
    expect_watcher_start,
    fire,
    hang_up,
    invoke,
    listing,
    mint_units,
    schedules,
    used_seconds,
)
from tests.support.identity import Issuer
from tests.support.internet import OFFER_SDP, FakeInternet, openai_error
from tests.support.realtime import LOCATION

Call = Callable[..., Reply]


def multipart(parts: dict[str, tuple[str, str]], boundary: str = "b0undary") -> tuple[str, str]:
    lines = []
    for name, (content_type, text) in parts.items():
        lines += [
            f"--{boundary}",
            f'Content-Disposition: form-data; name="{name}"',
            f"Content-Type: {content_type}",
            "",
            text,
        ]
    lines.append(f"--{boundary}--")
    return "\r\n".join(lines) + "\r\n", f"multipart/form-data; boundary={boundary}"


@pytest.fixture
def call(handler: Any, issuer: Issuer) -> Call:
    """POST /v1/realtime/calls with the raw offer and a valid token unless told otherwise."""

    def post(
        sdp: str | None = OFFER_SDP,
        *,
        user: str = "user-1",
        token: str | None = None,
        content_type: str | None = "application/sdp",
        query: str = "",
        context: LambdaContext | None = None,
        with_handler: Any = None,
    ) -> Reply:
        headers = {"authorization": f"Bearer {token or issuer.token(user)}", "origin": ORIGIN}
        if content_type:
            headers["content-type"] = content_type
        event = http_event("POST", CALLS, headers=headers, body=sdp)
        event["rawQueryString"] = query
        return invoke(with_handler or handler, event, context)

    return post


# --- placing a call ----------------------------------------------------------------------


@pytest.mark.usefixtures("one_minute")
def test_a_raw_offer_places_a_call_with_a_guaranteed_end(
    call: Call, aws: Aws, internet: FakeInternet
) -> None:
    before = time.time()
    reply = call()

    assert reply.status == 201, reply.body
    assert reply.header("content-type") == "application/sdp" and reply.body.startswith("v=0")
    assert reply.header("cache-control") == "no-store"
    call_id = call_id_of(reply)
    assert internet.live_calls() == [call_id]
    # The profile's 600 s, ended by the last minute boundary at or before then.
    ends_at = int(reply.required_header("call-ends-at"))
    assert ends_at % 60 == 0 and before + 600 - 60 < ends_at <= time.time() + 600
    assert int(reply.required_header("call-minutes-left")) == (3600 - (ends_at - int(before))) // 60
    assert reply.required_header("ratelimit").startswith('"minute";r=2;t=')
    assert "call-ends-at" in reply.required_header("access-control-expose-headers")
    # Upstream: the standard key, multipart sdp + session built from the profile.
    placed = internet.calls[call_id]
    assert placed["sdp"] == OFFER_SDP
    assert placed["session"]["type"] == "realtime" and placed["session"]["instructions"]
    assert placed["session"]["model"] == "gpt-realtime-2.1"
    # The hangup: a one-time schedule in the group, in the minute that ends at ends_at.
    (schedule,) = schedules(aws)
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ends_at - 60))
    assert schedule["ScheduleExpression"] == f"at({at})"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["Target"]["RoleArn"] == "arn:aws:iam::123456789012:role/token-vendor-scheduler"
    assert schedule["Target"]["RetryPolicy"] == {
        "MaximumRetryAttempts": 5,
        "MaximumEventAgeInSeconds": 600,
    }
    event = json.loads(schedule["Target"]["Input"])
    assert event["action"] == "hangup" and event["call_id"] == call_id and event["user"]


def test_the_multipart_form_with_a_session_part_chooses_within_the_profile(
    call: Call, internet: FakeInternet
) -> None:
    session = {
        "type": "realtime",
        "model": "gpt-realtime-2.1-mini",
        "audio": {"output": {"voice": "cedar"}},
    }
    body, content_type = multipart(
        {
            "sdp": ("application/sdp", OFFER_SDP),
            "session": ("application/json", json.dumps(session)),
        }
    )

    reply = call(body, content_type=content_type)

    assert reply.status == 201, reply.body
    sent = internet.calls[call_id_of(reply)]["session"]
    assert sent["model"] == "gpt-realtime-2.1-mini"
    assert sent["audio"]["output"] == {"speed": 1.0, "voice": "cedar"}


def test_a_base64_multipart_body_from_api_gateway_is_understood(
    handler: Any, issuer: Issuer
) -> None:
    import base64

    body, content_type = multipart({"sdp": ("application/sdp", OFFER_SDP)})
    event = http_event(
        "POST",
        CALLS,
        headers={"authorization": f"Bearer {issuer.token()}", "content-type": content_type},
        body=base64.b64encode(body.encode()).decode(),
        base64=True,
    )

    assert invoke(handler, event).status == 201


def test_the_openai_sdk_places_and_hangs_up_a_call_and_reads_our_refusals(
    handler: Any, issuer: Issuer, internet: FakeInternet
) -> None:
    """OpenAI's own SDK as the client, as its documentation shows, with our URL and a JWT."""
    import openai

    def gateway(request: httpx.Request) -> httpx.Response:
        event = http_event(
            request.method,
            request.url.path,
            headers=dict(request.headers),
            body=request.content.decode() or None,
        )
        event["rawQueryString"] = request.url.query.decode()
        result = handler(event, LambdaContext())
        return httpx.Response(
            result["statusCode"], headers=result["headers"], content=result["body"].encode()
        )

    client = openai.OpenAI(
        api_key=issuer.token(),
        base_url="https://vendor.example.com/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(gateway)),  # type: ignore[arg-type]
        max_retries=0,
    )

    raw = client.realtime.calls.with_raw_response.create(
        sdp=OFFER_SDP, session={"type": "realtime", "model": "gpt-realtime-2.1-mini"}
    )
    call_id = LOCATION.match(raw.headers["location"]).group(1)  # type: ignore[union-attr]
    assert raw.status_code == 201 and raw.text.startswith("v=0")
    client.realtime.calls.hangup(call_id)
    assert internet.hung_up == [call_id]

    with pytest.raises(openai.BadRequestError) as refused:
        client.realtime.calls.create(
            sdp=OFFER_SDP, session={"type": "realtime", "instructions": "Be evil"}
        )
    assert refused.value.param == "session.instructions"
    assert refused.value.code == "invalid_request"
    assert "session.instructions" in refused.value.message
    with pytest.raises(openai.BadRequestError) as minted:
        client.realtime.client_secrets.create(extra_body={"temperature": 1})
    assert minted.value.param == "temperature"


def test_the_call_is_listed_until_it_ends(call: Call, handler: Any, issuer: Issuer) -> None:
    placed = call()
    call_id = call_id_of(placed)

    listed = listing(handler, issuer)

    assert listed.status == 200 and listed.header("cache-control") == "no-store"
    (entry,) = listed.json["data"]
    assert listed.json["object"] == "list"
    assert entry == {
        "id": call_id,
        "object": "realtime.call",
        "started_at": entry["started_at"],
        "ends_at": int(placed.required_header("call-ends-at")),
    }
    assert listed.json["minutes_left_today"] == int(placed.required_header("call-minutes-left"))
    # No SPEND_LIMITS: no spend is read, none is reported.
    assert listing(handler, issuer, "someone-else").json == {
        "object": "list",
        "data": [],
        "minutes_left_today": 60,
    }


# --- hanging up ----------------------------------------------------------------------------


def test_the_owner_hangs_up_once_and_the_minutes_come_back(
    call: Call, handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    call_id = call_id_of(call())
    assert used_seconds(aws) > 500

    reply = hang_up(handler, issuer, call_id)

    assert reply.status == 200 and reply.header("cache-control") == "no-store"
    assert reply.json["id"] == call_id and reply.json["status"] == "ended"
    assert reply.json["object"] == "realtime.call" and reply.json["minutes_left_today"] >= 59
    assert internet.hung_up == [call_id] and schedules(aws) == []
    assert used_seconds(aws) <= 2  # only the seconds the call lasted
    assert listing(handler, issuer).json["data"] == []
    # Idempotent: the same answer, no second hangup upstream, nothing settled twice.
    again = hang_up(handler, issuer, call_id)
    assert again.status == 200 and again.json["id"] == call_id
    assert internet.hung_up == [call_id] and used_seconds(aws) <= 2


def test_anyone_but_the_owner_gets_404_and_the_call_lives_on(
    call: Call, handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    call_id = call_id_of(call(user="alice"))

    stranger = hang_up(handler, issuer, call_id, user="mallory")
    unknown = hang_up(handler, issuer, "rtc_" + "0" * 24, user="mallory")

    assert_problem(stranger, 404, "not-found")
    assert stranger.json == unknown.json  # no hint that the call exists
    assert internet.live_calls() == [call_id] and len(schedules(aws)) == 1


def test_a_hangup_without_a_token_is_401(call: Call, handler: Any) -> None:
    reply = invoke(handler, http_event("POST", f"{CALLS}/rtc_1/hangup"))

    assert_problem(reply, 401, "invalid-token")


def test_a_failed_upstream_hangup_is_503_and_keeps_the_scheduled_end(
    call: Call, handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    call_id = call_id_of(call())
    internet.openai_script = [lambda r: openai_error(503, None, "down")] * 2

    reply = hang_up(handler, issuer, call_id)

    assert_problem(reply, 503, "dependency-unavailable")
    assert len(schedules(aws)) == 1 and internet.live_calls() == [call_id]
    assert listing(handler, issuer).json["data"][0]["id"] == call_id


# --- the scheduled hangup ------------------------------------------------------------------


def test_the_deadline_hangs_up_and_settles_exactly_once_under_duplicates(
    call: Call, handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    call_id = call_id_of(call())
    (schedule,) = schedules(aws)

    outcomes = [fire(handler, schedule)["status"] for _ in range(3)]

    assert outcomes == ["settled", "already-ended", "already-ended"]
    assert internet.live_calls() == [] and internet.hung_up == [call_id]
    # Fired early in its minute: the unused seconds came back, once.
    used = used_seconds(aws)
    assert 0 <= used <= 3
    assert listing(handler, issuer).json == {
        "object": "list",
        "data": [],
        "minutes_left_today": (3600 - used) // 60,
    }
    assert hang_up(handler, issuer, call_id).status == 200  # ended; still idempotent


def test_a_deadline_after_the_owner_hung_up_settles_quietly(
    call: Call, handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    call_id = call_id_of(call())
    (schedule,) = schedules(aws)  # read before the hangup deletes it
    hang_up(handler, issuer, call_id)
    used = used_seconds(aws)

    assert fire(handler, schedule)["status"] == "already-ended"
    assert used_seconds(aws) == used and internet.hung_up == [call_id]


def test_a_deadline_that_cannot_reach_openai_raises_so_it_is_retried(
    call: Call, handler: Any, aws: Aws, internet: FakeInternet
) -> None:
    call_id_of(call())
    (schedule,) = schedules(aws)
    internet.openai_script = [lambda r: openai_error(503, None, "down")] * 2
    used = used_seconds(aws)

    with pytest.raises(Exception, match="openai"):
        fire(handler, schedule)

    assert used_seconds(aws) == used  # nothing settled: the retry will
    assert fire(handler, schedule)["status"] == "settled"


@pytest.mark.parametrize(
    "event", [{"action": "hangup"}, {"action": "hangup", "call_id": 5, "user": "u"}]
)
def test_a_malformed_scheduled_event_is_ignored(handler: Any, event: dict[str, Any]) -> None:
    assert handler(event, LambdaContext()) == {"status": "ignored"}


# --- limits ----------------------------------------------------------------------------------


def test_a_call_beyond_the_concurrent_limit_is_429_with_a_sentence_and_costs_nothing(
    call: Call, aws: Aws, internet: FakeInternet
) -> None:
    first, second = call(), call()
    assert first.status == second.status == 201
    units = mint_units(aws)

    reply = call()

    body = assert_problem(reply, 429, "call-limit")
    assert body["policy"] == "concurrent"
    assert body["detail"].startswith("You already have 2 calls in progress")
    retry = int(reply.required_header("retry-after"))
    assert 500 < retry <= 600 and body["retry_after"] == retry
    assert (
        body["error"]["type"] == "rate_limit_error" and body["error"]["message"] == body["detail"]
    )
    assert len(internet.calls) == 2 and mint_units(aws) == units  # the mint unit came back


def test_a_call_the_day_budget_cannot_cover_is_429_until_midnight(
    make_handler: Any, issuer: Issuer, call: Call, internet: FakeInternet
) -> None:
    handler = make_handler(CALL_LIMITS="concurrent=3,minutes/day=15")
    assert call(with_handler=handler).status == 201

    reply = call(with_handler=handler)

    body = assert_problem(reply, 429, "call-limit")
    assert body["policy"] == "minutes" and body["minutes_left_today"] <= 6
    assert re.match(
        r"^You have \d call minutes? left today and a call may last up to 10", body["detail"]
    )
    # To the next UTC midnight, read a moment after the function did (a second may turn).
    assert 0 <= int(reply.required_header("retry-after")) - (86400 - int(time.time()) % 86400) <= 1
    assert len(internet.calls) == 1


@pytest.mark.usefixtures("one_minute")
def test_the_mint_quota_counts_calls_too(make_handler: Any, call: Call) -> None:
    handler = make_handler(QUOTAS="2/minute", CALL_LIMITS="concurrent=5,minutes/day=600")
    assert [call(with_handler=handler).status for _ in range(2)] == [201, 201]

    reply = call(with_handler=handler)

    assert_problem(reply, 429, "quota-exceeded")


# --- bad requests: refused before anything is spent -------------------------------------------


@pytest.mark.parametrize(
    ("sdp", "content_type", "status", "field"),
    [
        ("", "application/sdp", 400, "sdp"),
        ("   \r\n", "application/sdp", 400, "sdp"),
        ("hello, I am not SDP", "application/sdp", 400, "sdp"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n", "application/sdp", 400, "sdp"),  # no media
        (
            "v=0\r\nm=audio 9 RTP 0\r\n" + "a=x:" + "y" * 40_000 + "\r\n",
            "application/sdp",
            400,
            "sdp",
        ),
        ("v=0\r\nm=audio 9 RTP 0\r\n" + "a=x\r\n" * 20_000, "application/sdp", 413, None),
        (OFFER_SDP, "text/plain", 415, None),
        (OFFER_SDP, None, 415, None),
        (OFFER_SDP, "application/json", 415, None),
    ],
)
def test_a_bad_offer_is_refused_before_any_quota_is_spent(
    call: Call,
    aws: Aws,
    internet: FakeInternet,
    sdp: str,
    content_type: str | None,
    status: int,
    field: str | None,
) -> None:
    reply = call(sdp, content_type=content_type)

    body = assert_problem(
        reply,
        status,
        {400: "invalid-request", 413: "body-too-large", 415: "unsupported-media-type"}[status],
    )
    assert body.get("field") == field and body["error"]["param"] == field
    assert aws.quota_items() == [] and internet.openai_requests() == []


@pytest.mark.parametrize(
    ("parts", "field"),
    [
        ({"session": ("application/json", "{}")}, "sdp"),
        ({"sdp": ("application/sdp", OFFER_SDP), "extra": ("text/plain", "x")}, "extra"),
        (
            {"sdp": ("application/sdp", OFFER_SDP), "session": ("application/json", "[1]")},
            "session",
        ),
        ({"sdp": ("application/sdp", OFFER_SDP), "session": ("application/json", "{")}, "session"),
        (
            {
                "sdp": ("application/sdp", OFFER_SDP),
                "session": ("application/json", '{"type": "realtime", "tools": []}'),
            },
            "session.tools",
        ),
        (
            {
                "sdp": ("application/sdp", OFFER_SDP),
                "session": ("application/json", '{"model": "gpt-4o"}'),
            },
            "session.model",
        ),
        (
            {
                "sdp": ("application/sdp", OFFER_SDP),
                "session": ("application/json", '{"profile": "nope"}'),
            },
            "profile",
        ),
    ],
)
def test_a_bad_multipart_request_is_400_naming_the_field(
    call: Call, aws: Aws, parts: dict[str, tuple[str, str]], field: str
) -> None:
    body, content_type = multipart(parts)

    reply = call(body, content_type=content_type)

    assert assert_problem(reply, 400, "invalid-request")["field"] == field
    assert aws.quota_items() == []


def test_the_profile_query_parameter_picks_a_profile_and_checks_its_scope(
    call: Call, issuer: Issuer, aws: Aws
) -> None:
    assert_problem(call(query="profile=support-agent"), 403, "insufficient-scope")
    assert_problem(call(query="profile=nope"), 400, "invalid-request")
    assert call(query="voice=cedar").json["field"] == "voice"
    token = issuer.token(scope="openid realtime:support")
    assert call(query="profile=support-agent", token=token).status == 201


def test_a_profile_serves_only_its_flows_and_names_the_route_to_use(
    make_handler: Any, issuer: Issuer, call: Call, tmp_path: Path
) -> None:
    shipped = Path(__file__).resolve().parents[2] / "functions/token_vendor/api/profiles.json"
    profiles = json.loads(shipped.read_text())
    profiles["default_profile"] = "assistant"  # one name: each route uses it
    profiles["profiles"]["support-agent"]["flows"] = ["client_secrets"]
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps(profiles))
    handler = make_handler(PROFILES_FILE=str(path))
    token = issuer.token(scope="openid realtime:support")

    minted = invoke(
        handler,
        http_event(
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
            body="{}",
        ),
    )
    called = call(query="profile=support-agent", token=token, with_handler=handler)

    assert assert_problem(minted, 400, "wrong-flow")["route"] == "/v1/realtime/calls"
    assert "use POST /v1/realtime/calls" in minted.json["detail"]
    assert assert_problem(called, 400, "wrong-flow")["route"] == "/v1/realtime/client_secrets"
    assert call(with_handler=handler, token=token).status == 201


def test_no_token_is_401_and_nothing_is_spent(call: Call, aws: Aws, internet: FakeInternet) -> None:
    reply = call(token="not-a-jwt")

    assert_problem(reply, 401, "invalid-token")
    assert aws.quota_items() == [] and internet.requests == []


def test_other_methods_are_405_and_other_paths_404(handler: Any) -> None:
    reply = invoke(handler, http_event("DELETE", CALLS))
    assert_problem(reply, 405, "method-not-allowed")
    assert reply.header("allow") == "GET, POST"
    assert invoke(handler, http_event("GET", f"{CALLS}/rtc_1/hangup")).header("allow") == "POST"
    assert invoke(handler, http_event("GET", f"{CALLS}/rtc_1")).status == 404


def test_a_preflight_for_the_calls_routes_is_granted(handler: Any) -> None:
    for path, method in ((CALLS, "GET"), (CALLS, "POST"), (f"{CALLS}/rtc_1/hangup", "POST")):
        headers = {
            "origin": ORIGIN,
            "access-control-request-method": method,
            "access-control-request-headers": "authorization, content-type",
        }
        reply = invoke(handler, http_event("OPTIONS", path, headers=headers))
        assert reply.status == 204 and reply.header("access-control-allow-origin") == ORIGIN


# --- failures lose nothing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "status", "slug"),
    [
        (lambda r: openai_error(400, "invalid_offer", "Bad SDP"), 502, "upstream-error"),
        (lambda r: httpx.Response(201, content=b"v=0\r\n"), 502, "upstream-error"),  # no Location
        (
            lambda r: openai_error(429, "insufficient_quota", "No money", {"retry-after": "30"}),
            503,
            "dependency-unavailable",
        ),
        (lambda r: openai_error(500, None, "boom"), 503, "dependency-unavailable"),
        (
            lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=r)),
            504,
            "upstream-timeout",
        ),
        (
            lambda r: (_ for _ in ()).throw(httpx.ConnectError("down", request=r)),
            503,
            "dependency-unavailable",
        ),
    ],
)
def test_an_upstream_failure_returns_the_slot_the_minutes_and_the_unit(
    call: Call,
    handler: Any,
    issuer: Issuer,
    aws: Aws,
    internet: FakeInternet,
    upstream: Any,
    status: int,
    slug: str,
) -> None:
    internet.openai_script = [upstream]

    reply = call()

    body = assert_problem(reply, status, slug)
    assert len(internet.openai_requests()) == 1  # never retried: a retry can place twice
    if status == 502:
        assert body["detail"] == "The Realtime API did not provide the call."
    assert used_seconds(aws) == 0 and mint_units(aws) == 0 and schedules(aws) == []
    assert listing(handler, issuer).json["minutes_left_today"] == 60
    assert call().status == 201  # the slot is free again


def _refuse_create_schedule(aws: Aws, error: Exception) -> None:
    def refuse(**_: Any) -> None:
        raise error

    aws.scheduler.meta.events.register("before-call.scheduler.CreateSchedule", refuse)


@pytest.mark.parametrize(
    "error",
    [
        ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "CreateSchedule"
        ),
        KeyError("an unexpected failure inside the client"),
    ],
)
def test_no_call_is_left_running_when_its_end_cannot_be_scheduled(
    call: Call, handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet, error: Exception
) -> None:
    _refuse_create_schedule(aws, error)

    reply = call()

    assert_problem(reply, 503, "dependency-unavailable")
    assert len(internet.calls) == 1 and internet.live_calls() == []  # placed, then hung up
    assert used_seconds(aws) == 0 and mint_units(aws) == 0
    assert listing(handler, issuer).json["data"] == []


def test_no_call_is_left_running_when_the_ledger_cannot_record_it(
    call: Call, aws: Aws, internet: FakeInternet
) -> None:
    def fail_the_record(params: dict[str, Any], **_: Any) -> None:
        if params.get("UpdateExpression") == "SET #call = :call":
            raise ClientError({"Error": {"Code": "InternalServerError"}}, "UpdateItem")

    aws.dynamodb.meta.events.register("provide-client-params.dynamodb.UpdateItem", fail_the_record)

    reply = call()

    assert_problem(reply, 503, "dependency-unavailable")
    assert len(internet.calls) == 1 and internet.live_calls() == [] and schedules(aws) == []


def test_dynamodb_down_is_503_and_no_call(call: Call, aws: Aws, internet: FakeInternet) -> None:
    aws.dynamodb.delete_table(TableName="quota-table")

    reply = call()

    assert_problem(reply, 503, "dependency-unavailable")
    assert internet.openai_requests() == [] and schedules(aws) == []


def test_too_little_lambda_time_left_stops_before_spending(
    call: Call, aws: Aws, internet: FakeInternet
) -> None:
    reply = call(context=LambdaContext(remaining_ms=5000))

    assert_problem(reply, 503, "dependency-unavailable")
    assert aws.quota_items() == [] and internet.openai_requests() == []


def test_calls_without_a_schedule_group_are_a_500_and_secrets_still_work(
    make_handler: Any, call: Call, mint: Any, logs: Any
) -> None:
    handler = make_handler(SCHEDULE_GROUP="", SCHEDULER_ROLE_ARN="")

    assert_problem(call(with_handler=handler), 500, "misconfigured")
    assert "SCHEDULE_GROUP" in logs.text


# --- round trips and logs ----------------------------------------------------------------------


def test_a_warm_call_setup_makes_exactly_these_round_trips(
    call: Call, handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    calls = count_aws_calls(aws)
    calls["scheduler"] = 0
    aws.scheduler.meta.events.register(
        "request-created", lambda **kw: calls.__setitem__("scheduler", calls["scheduler"] + 1)
    )
    first = call()  # cold: the key and the key set are read on top
    assert hang_up(handler, issuer, call_id_of(first)).status == 200

    def measure() -> dict[str, int]:
        internet.requests.clear()
        calls.update(dynamodb=0, secretsmanager=0, scheduler=0)
        assert call().status == 201
        return dict(calls) | {
            "jwks": len(internet.issuer_requests()),
            "openai": len(internet.openai_requests()),
        }

    # The mint quota, the ledger's admission, OpenAI, then the ledger's record beside the
    # schedule (in parallel): four steps of wall time, five round trips.
    assert measure() == {"dynamodb": 3, "secretsmanager": 0, "scheduler": 1, "jwks": 0, "openai": 1}
    # With a call of the user's live in the first slot, admission tries it, learns from the
    # refusal's image which slot is free, and takes that one: one more attempt.
    assert measure() == {"dynamodb": 4, "secretsmanager": 0, "scheduler": 1, "jwks": 0, "openai": 1}


class Timeline:
    """Every outbound request as (label, start, end), each held HOLD seconds: requests sent
    together overlap, and a request sent after another has answered starts after it ended.
    Their steps (bench.report.steps) are the round trips of wall time on the critical path."""

    HOLD = 0.15

    def __init__(self) -> None:
        self.spans: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()

    def _add(self, label: str, started: float) -> None:
        with self._lock:
            self.spans.append((label, started, time.monotonic()))

    def watch_aws(self, client: Any) -> None:
        service = client.meta.service_model.endpoint_prefix

        def start(context: dict[str, Any], **_: Any) -> None:
            context["timeline_start"] = time.monotonic()
            time.sleep(self.HOLD)

        def end(model: Any, context: dict[str, Any], **_: Any) -> None:
            self._add(f"{service}.{model.name}", context["timeline_start"])

        client.meta.events.register(f"before-parameter-build.{service}", start)
        client.meta.events.register(f"after-call.{service}", end)

    def http(self, inner: httpx.MockTransport, name: str) -> httpx.Client:
        def handle(request: httpx.Request) -> httpx.Response:
            started = time.monotonic()
            time.sleep(self.HOLD)
            response = inner.handle_request(request)
            self._add(f"{name}.{request.method} {request.url.path}", started)
            return response

        return httpx.Client(transport=httpx.MockTransport(handle), follow_redirects=False)

    def steps(self) -> list[list[str]]:
        """The requests step by step, each step's labels sorted."""
        return report.steps(self.spans)


def test_a_warm_call_setup_in_the_default_config_makes_five_steps_of_round_trips(
    make_watched_handler: Any, aws: Aws, place: Any, internet: FakeInternet
) -> None:
    """SPEND_LIMITS set and a watcher per call, as the template ships: the spend is read
    beside the admission, the watcher starts beside the ledger's record and the two schedules
    (the deadline, the backstop), and the answer waits until the watcher says it holds the
    call (a warm watcher: at the first look)."""
    timeline = Timeline()
    handler, lambda_client = make_watched_handler(
        {"SPEND_LIMITS": "usd/day=2.00"}, timeline.http(internet.transport, "openai")
    )

    with Stubber(lambda_client) as stub:
        for _ in range(2):
            expect_watcher_start(stub)
        assert place(user="cold", with_handler=handler).status == 201  # the key, the key set
        for client in (aws.dynamodb, aws.scheduler, lambda_client):
            timeline.watch_aws(client)
        timeline.spans.clear()
        assert place(user="warm", with_handler=handler).status == 201
        stub.assert_no_pending_responses()

    assert timeline.steps() == [
        ["dynamodb.BatchGetItem", "dynamodb.UpdateItem"],  # the spend, beside the mint quota
        ["dynamodb.UpdateItem"],  # the ledger's admission
        ["openai.POST /v1/realtime/calls"],
        ["dynamodb.UpdateItem", "lambda.Invoke", "scheduler.CreateSchedule"]
        + ["scheduler.CreateSchedule"],
        ["dynamodb.GetItem"],  # the watcher's lease: attached, the profile in force
    ]


def test_logs_tell_the_call_story_and_hold_no_secret(
    call: Call, handler: Any, issuer: Issuer, aws: Aws, logs: Any
) -> None:
    logs.debug()
    token = issuer.token()
    call_id = call_id_of(call(token=token))
    fire(handler, schedules(aws)[0])

    outcomes = [r.get("outcome") for r in logs.records()]
    assert "call_placed" in outcomes and "call_settled" in outcomes
    for secret in (token, token.split(".")[2], "sk-test-"):
        assert secret not in logs.text
    assert call_id in logs.text
