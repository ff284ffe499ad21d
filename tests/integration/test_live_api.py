"""`POST /v1/live/sessions` through the real handler (moto for AWS, a fake OpenAI, a stubbed
Lambda client for the watcher): OpenAI's own shapes in and out, the profile fixes the session,
the caller chooses only what it allows, refusals are problem documents with OpenAI's `error`
envelope and cost nothing, the session's end is scheduled, its 15 s charged, its watcher
started, and the owner's hangup closes it through the watcher's function."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from token_vendor.core.ids import CallId
from token_vendor.core.pricing import DEFAULT_PRICES_FILE, live_cost, load_prices
from token_vendor.core.spend import SpendLedger, SpendLimits

from devstack.lambda_events import http_event
from tests.support.aws import Aws
from tests.support.env import ORIGIN, TABLE
from tests.support.handler import (
    WATCHER,
    Reply,
    expect_watcher_start,
    fire,
    invoke,
    listing,
    mint_units,
    schedules,
    user_hash,
)
from tests.support.identity import Issuer
from tests.support.internet import OFFER_SDP, FakeInternet, openai_error
from tests.support.live import conform_create
from tests.support.logs import LogCapture

LIVE = "/v1/live/sessions"
UP_FRONT = live_cost(15, 0, load_prices(DEFAULT_PRICES_FILE, "", []).for_live("gpt-live-1.1")[0])


def create(
    handler: Any,
    issuer: Issuer,
    body: Any = None,
    *,
    user: str = "user-1",
    query: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> Reply:
    body = {"transport": {"type": "webrtc", "sdp": OFFER_SDP}} if body is None else body
    headers = {
        "authorization": f"Bearer {issuer.token(user)}",
        "origin": ORIGIN,
        "content-type": content_type,
    }
    raw = body if isinstance(body, str) else json.dumps(body)
    raw_query = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    event = http_event("POST", LIVE, headers=headers, body=raw, raw_query=raw_query)
    return invoke(handler, event)


@pytest.fixture
def live(make_watched_handler: Any) -> tuple[Any, Any]:
    return make_watched_handler({"SPEND_LIMITS": "usd/day=5"})


def placed(live: tuple[Any, Any], issuer: Issuer, body: Any = None, **kw: Any) -> Reply:
    handler, lambda_client = live
    with Stubber(lambda_client) as stub:
        expect_watcher_start(stub)
        return create(handler, issuer, body, **kw)


def test_a_live_session_is_created_with_the_profiles_session_and_openais_shapes(
    live: tuple[Any, Any], issuer: Issuer, internet: FakeInternet, aws: Aws
) -> None:
    reply = placed(live, issuer)

    assert reply.status == 201, reply.body
    created = conform_create(httpx.Response(reply.status, headers=reply.headers, text=reply.body))
    session_id = created.session.id
    assert reply.header("location") == f"{LIVE}/{session_id}"
    assert (
        int(reply.header("call-ends-at") or 0) > 0 and reply.header("cache-control") == "no-store"
    )
    # What reached OpenAI: the profile's session, the user's pseudonym, a narrow channel.
    sent = internet.calls[session_id]["session"]
    assert sent["model"] == "gpt-live-1.1" and sent["audio"] == {"output": {"voice": "marin"}}
    assert sent["instructions"].startswith("You are a friendly, concise voice assistant")
    assert sent["store"] is False
    assert sent["safety_identifier"] == user_hash("user-1")
    assert sent["client"]["data_channel"]["allowed_client_events"] == [
        "session.input_audio.mute",
        "session.input_audio.unmute",
    ]
    # Its end is guaranteed, by the token function, like a call's.
    assert sorted(s["Name"].split("-")[0] for s in schedules(aws)) == ["call", "watch"]
    # The 15 s its create bills are charged at once.
    spend = SpendLedger(TABLE, SpendLimits(), aws.dynamodb)
    assert spend.call_total(CallId(session_id)) == UP_FRONT
    listed = listing(live[0], issuer).json
    assert [(c["id"], c["object"]) for c in listed["data"]] == [(session_id, "live.session")]


def test_the_watch_event_of_a_live_session_says_so(live: tuple[Any, Any], issuer: Issuer) -> None:
    handler, lambda_client = live
    events: list[dict[str, Any]] = []
    with Stubber(lambda_client) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 202},
            {"FunctionName": WATCHER, "InvocationType": "Event", "Payload": ANY},
        )
        lambda_client.meta.events.register(
            "before-parameter-build.lambda.Invoke",
            lambda params, **_: events.append(json.loads(params["Payload"])),
        )
        reply = create(handler, issuer)
    assert reply.status == 201
    (event,) = events
    assert event["api"] == "live" and event["profile"] == "live-assistant"
    assert event["started_at"] <= event["ends_at"]


def test_the_caller_chooses_the_model_and_voice_the_profile_allows(
    live: tuple[Any, Any], issuer: Issuer, internet: FakeInternet
) -> None:
    body = {
        "session": {"model": "gpt-live-1", "audio": {"output": {"voice": "cedar"}}},
        "transport": {"type": "webrtc", "sdp": OFFER_SDP},
    }
    reply = placed(live, issuer, body)
    assert reply.status == 201, reply.body
    sent = internet.calls[reply.json["session"]["id"]]["session"]
    assert sent["model"] == "gpt-live-1" and sent["audio"]["output"]["voice"] == "cedar"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"session": {"instructions": "Be rude."}}, "session.instructions"),
        (
            {"session": {"client": {"data_channel": {"allowed_client_events": "all"}}}},
            "session.client",
        ),
        ({"session": {"delegation": {"type": "client"}}}, "session.delegation"),
        ({"session": {"model": "gpt-live-9"}}, "session.model"),
        ({"session": {"audio": {"output": {"voice": "alloy"}}}}, "session.audio.output.voice"),
        ({"session": {"store": True}}, "session.store"),
        ({"transport": {"type": "sip", "sdp": OFFER_SDP}}, "transport.type"),
        ({"transport": {"type": "webrtc"}}, "transport.sdp"),
        ({"transport": {"type": "webrtc", "sdp": "hello"}}, "sdp"),
        ({"extra": 1}, "extra"),
    ],
)
def test_anything_the_profile_does_not_allow_is_400_naming_the_field_and_costs_nothing(
    make_handler: Any, issuer: Issuer, internet: FakeInternet, aws: Aws, body: Any, field: str
) -> None:
    handler = make_handler(WATCHER_FUNCTION_NAME=WATCHER)
    base = {"transport": {"type": "webrtc", "sdp": OFFER_SDP}}
    units = mint_units(aws)

    reply = create(handler, issuer, base | body)

    assert reply.status == 400, reply.body
    problem = reply.json
    assert reply.header("content-type") == "application/problem+json"
    assert problem["error"]["param"] == field or problem.get("field") == field, problem
    assert problem["error"]["type"] == "invalid_request_error"
    assert internet.openai_requests() == [] and mint_units(aws) == units


def test_a_body_that_is_not_json_is_refused(make_handler: Any, issuer: Issuer) -> None:
    handler = make_handler(WATCHER_FUNCTION_NAME=WATCHER)
    reply = create(handler, issuer, OFFER_SDP, content_type="application/sdp")
    assert reply.status == 415 and reply.json["type"].endswith("unsupported-media-type")
    reply = create(handler, issuer, "{not json", content_type="application/json")
    assert reply.status == 400


def test_a_realtime_profile_on_the_live_route_is_refused_with_the_route_to_use(
    make_handler: Any, issuer: Issuer, internet: FakeInternet
) -> None:
    handler = make_handler(WATCHER_FUNCTION_NAME=WATCHER)
    reply = create(handler, issuer, query={"profile": "assistant"})
    assert reply.status == 400, reply.body
    assert reply.json["route"] == "/v1/realtime/calls"
    assert reply.json["detail"] == (
        "The profile 'assistant' does not serve GPT-Live sessions; use POST /v1/realtime/calls."
    )
    assert internet.openai_requests() == []


def test_without_the_watchers_function_live_sessions_are_refused(
    make_handler: Any, issuer: Issuer, internet: FakeInternet
) -> None:
    """Only the watcher's function can close a Live session: none configured, none created."""
    reply = create(make_handler(), issuer)
    assert reply.status >= 500 and reply.json["type"].startswith("urn:")
    assert internet.openai_requests() == []


def test_openais_refusal_gives_back_everything(
    live: tuple[Any, Any], issuer: Issuer, internet: FakeInternet, aws: Aws
) -> None:
    units = mint_units(aws)
    internet.openai_script = [lambda r: openai_error(400, "invalid_value", "Bad SDP")]
    handler, _ = live

    reply = create(handler, issuer)

    assert reply.status == 502 and reply.json["type"].endswith("upstream-error")
    assert mint_units(aws) == units and schedules(aws) == []
    assert listing(handler, issuer).json["minutes_left_today"] == 60


def closed_by_watcher(closed: bool) -> dict[str, Any]:
    data = json.dumps({"closed": closed, "call_id": "x"}).encode()
    return {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(data), len(data))}


def test_the_owner_hangs_up_through_the_watchers_function(
    live: tuple[Any, Any], issuer: Issuer, aws: Aws
) -> None:
    handler, lambda_client = live
    session_id = placed(live, issuer).json["session"]["id"]
    asked: list[dict[str, Any]] = []
    with Stubber(lambda_client) as stub:
        stub.add_response(
            "invoke",
            closed_by_watcher(True),
            {"FunctionName": WATCHER, "InvocationType": "RequestResponse", "Payload": ANY},
        )
        lambda_client.meta.events.register(
            "before-parameter-build.lambda.Invoke",
            lambda params, **_: asked.append(json.loads(params["Payload"])),
        )
        headers = {"authorization": f"Bearer {issuer.token('user-1')}", "origin": ORIGIN}
        reply = invoke(handler, http_event("POST", f"{LIVE}/{session_id}/hangup", headers=headers))

    assert reply.status == 200, reply.body
    assert reply.json["end_reason"] == "hangup" and reply.json["object"] == "live.session"
    (close,) = asked
    assert close["action"] == "close" and close["call_id"] == session_id
    assert close["user"] == user_hash("user-1") and 0 < close["seconds"] <= 8
    assert listing(handler, issuer).json["data"] == []
    assert [s["Name"].split("-")[0] for s in schedules(aws)] == ["watch"]  # the deadline went


def test_a_close_the_watcher_could_not_confirm_keeps_the_session(
    live: tuple[Any, Any], issuer: Issuer
) -> None:
    handler, lambda_client = live
    session_id = placed(live, issuer).json["session"]["id"]
    failed = json.dumps({"status": "failed"}).encode()
    with Stubber(lambda_client) as stub:
        stub.add_response(
            "invoke", {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(failed), len(failed))}
        )
        headers = {"authorization": f"Bearer {issuer.token('user-1')}", "origin": ORIGIN}
        reply = invoke(handler, http_event("POST", f"{LIVE}/{session_id}/hangup", headers=headers))
    assert reply.status == 503
    assert [c["id"] for c in listing(handler, issuer).json["data"]] == [session_id]


@pytest.mark.parametrize("route", ["/v1/realtime/calls", "/v1/realtime/client_secrets"])
def test_a_live_profile_on_a_realtime_route_is_refused_with_the_live_route(
    make_handler: Any, issuer: Issuer, internet: FakeInternet, route: str
) -> None:
    handler = make_handler(WATCHER_FUNCTION_NAME=WATCHER)
    token = issuer.token("user-1", scope="openid realtime:client_secrets")
    headers = {"authorization": f"Bearer {token}", "origin": ORIGIN}
    if route.endswith("calls"):
        event = http_event(
            "POST", route, headers=headers | {"content-type": "application/sdp"},
            body=OFFER_SDP, raw_query="profile=live-assistant",
        )  # fmt: skip
    else:
        event = http_event(
            "POST", route, headers=headers | {"content-type": "application/json"},
            body=json.dumps({"profile": "live-assistant"}),
        )  # fmt: skip
    reply = invoke(handler, event)
    assert reply.status == 400, reply.body
    assert reply.json["route"] == LIVE
    assert internet.openai_requests() == []


def test_the_deadline_closes_a_live_session_through_the_watchers_function(
    live: tuple[Any, Any], issuer: Issuer, aws: Aws
) -> None:
    handler, lambda_client = live
    session_id = placed(live, issuer).json["session"]["id"]
    (deadline,) = [s for s in schedules(aws) if s["Name"].startswith("call-")]
    event = json.loads(deadline["Target"]["Input"])
    assert event == {"action": "hangup", "call_id": session_id, "user": user_hash("user-1"),
                     "api": "live"}  # fmt: skip
    with Stubber(lambda_client) as stub:
        stub.add_response(
            "invoke",
            closed_by_watcher(True),
            {"FunctionName": WATCHER, "InvocationType": "RequestResponse", "Payload": ANY},
        )
        result = fire(handler, deadline)
    assert result == {"status": "settled", "call_id": session_id}
    ended = invoke(handler, http_event("POST", f"{LIVE}/{session_id}/hangup", headers={
        "authorization": f"Bearer {issuer.token('user-1')}", "origin": ORIGIN}))  # fmt: skip
    assert ended.json["end_reason"] == "deadline"


def test_a_live_profile_without_the_watchers_function_is_a_cold_start_warning(
    make_handler: Any, issuer: Issuer, app_module: Any
) -> None:
    logs = LogCapture(app_module)
    try:
        create(make_handler(), issuer)  # the shipped profiles, no WATCHER_FUNCTION_NAME
        create(make_handler(WATCHER_FUNCTION_NAME=WATCHER), issuer)
    finally:
        logs.close()
    said = [r["message"] for r in logs.records() if "GPT-Live" in str(r.get("message"))]
    assert said == [
        "profile 'live-assistant' serves GPT-Live sessions, which need the call watcher "
        "(WATCHER_FUNCTION_NAME): every create is refused as misconfigured"
    ]
