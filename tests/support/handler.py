"""The function's HTTP surface as the tests drive it: an API Gateway event in, a reply out;
what every problem reply must look like; and the calls routes (place, list, hang up, the
scheduled hangup) with what they leave in the ledger."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.stub import ANY, Stubber
from token_vendor.core.ids import CallId, UserId
from token_vendor.core.spend import SpendLedger, SpendLimits

from devstack.lambda_events import LambdaContext, http_event
from tests.support.aws import Aws, botocore_session
from tests.support.env import ORIGIN, SCHEDULE_GROUP, TABLE
from tests.support.identity import ISSUER, Issuer
from tests.support.realtime import LOCATION

CALLS = "/v1/realtime/calls"
FUNCTION_ARN = LambdaContext().invoked_function_arn
WATCHER = "stack-call-watcher"  # the watcher's name the watched handler starts (integration)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def header(self, name: str) -> str | None:
        return {k.lower(): v for k, v in self.headers.items()}.get(name.lower())

    def required_header(self, name: str) -> str:
        """The header's value; a missing one fails the test here, naming the header."""
        value = self.header(name)
        assert value is not None, f"the reply has no {name} header"
        return value


Mint = Callable[..., Reply]


def invoke(
    handler: Callable[..., dict[str, Any]],
    event: dict[str, Any],
    context: LambdaContext | None = None,
) -> Reply:
    result = handler(event, context or LambdaContext())
    return Reply(result["statusCode"], result.get("headers") or {}, result.get("body") or "")


def assert_problem(reply: Reply, status: int, slug: str) -> dict[str, Any]:
    assert reply.status == status, reply.body
    assert reply.header("content-type") == "application/problem+json"
    body = reply.json
    assert body["type"].endswith(":" + slug) and body["status"] == status
    assert body["title"] and body["detail"]
    return body


# --- server-owned calls ---------------------------------------------------------------------


def hang_up(handler: Any, issuer: Issuer, call_id: str, user: str = "user-1") -> Reply:
    headers = {"authorization": f"Bearer {issuer.token(user)}", "origin": ORIGIN}
    return invoke(handler, http_event("POST", f"{CALLS}/{call_id}/hangup", headers=headers))


def listing(handler: Any, issuer: Issuer, user: str = "user-1") -> Reply:
    headers = {"authorization": f"Bearer {issuer.token(user)}"}
    return invoke(handler, http_event("GET", CALLS, headers=headers))


def call_id_of(reply: Reply) -> str:
    match = LOCATION.match(reply.header("location") or "")
    assert match, reply.headers
    return match.group(1)


def schedules(aws: Aws) -> list[dict[str, Any]]:
    names = [s["Name"] for s in aws.scheduler.list_schedules(GroupName=SCHEDULE_GROUP)["Schedules"]]
    return [aws.scheduler.get_schedule(Name=n, GroupName=SCHEDULE_GROUP) for n in names]


def fire(handler: Any, schedule: dict[str, Any]) -> dict[str, Any]:
    """What EventBridge Scheduler does at the schedule's time: invoke the target with Input."""
    assert schedule["Target"]["Arn"] == FUNCTION_ARN
    return dict(handler(json.loads(schedule["Target"]["Input"]), LambdaContext()))


def watchers_attach(lambda_client: Any, after: float = 0.0) -> None:
    """Each watcher the client starts holds its call `after` seconds later (at once: a warm
    watcher): its lease says attached, written through a client of its own, so it counts as
    nobody's round trip."""
    from token_vendor.core.lease import LeaseStore

    leases = LeaseStore(TABLE, botocore_session().create_client("dynamodb"))

    def attach(call_id: CallId) -> None:
        assert leases.acquire(call_id, "w_started", 60)
        assert leases.mark_attached(call_id, "w_started")

    def started(params: dict[str, Any], **_: Any) -> None:
        event = json.loads(params["Payload"])
        if event.get("action") != "watch":  # a Live session's close, say: not a start
            return
        call_id = CallId(event["call_id"])
        if after:
            threading.Timer(after, attach, [call_id]).start()
        else:
            attach(call_id)

    lambda_client.meta.events.register("before-parameter-build.lambda.Invoke", started)


def expect_watcher_start(stub: Stubber) -> None:
    """One asynchronous start of the call watcher, by name, accepted (202)."""
    stub.add_response(
        "invoke",
        {"StatusCode": 202},
        {"FunctionName": WATCHER, "InvocationType": "Event", "Payload": ANY},
    )


# --- what the ledger holds ------------------------------------------------------------------


def counters(aws: Aws) -> int:
    """Mint units counted this minute, over every item."""
    return sum(
        int(v["N"])
        for item in aws.quota_items()
        for k, v in item.items()
        if k.startswith("c_minute")
    )


def mint_units(aws: Aws) -> int:
    """Mint units counted this minute, over the quota items only."""
    return sum(
        int(v["N"])
        for item in aws.quota_items()
        if item["pk"]["S"].startswith("quota#")
        for k, v in item.items()
        if k.startswith("c_minute")
    )


def window_units(aws: Aws, user: str, prefix: str) -> int:
    """One user's quota units (`user` as the ledger names it) in every window whose counter
    starts with `prefix` (`c_minute`, `c_day_`), over the user's quota items."""
    return sum(
        int(v["N"])
        for item in aws.quota_items()
        if item["pk"]["S"].startswith(f"quota#{user}#")
        for k, v in item.items()
        if k.startswith(prefix)
    )


def user_hash(user: str) -> UserId:
    """The ledger's name for a user of the tests' issuer."""
    return UserId(hashlib.sha256(f"{ISSUER}\x00{user}".encode()).hexdigest()[:32])


def spend(aws: Aws, user: str, micros: int, limits: str) -> None:
    """`micros` already spent today by `user`, on an earlier call."""
    ledger = SpendLedger(TABLE, SpendLimits.parse(limits, []), aws.dynamodb)
    ledger.charge(
        call_id=CallId("rtc_earlier"),
        user=user_hash(user),
        event_key=f"resp:{time.time()}",
        micros=micros,
    )


def used_seconds(aws: Aws) -> int:
    return sum(
        int(v["N"])
        for item in aws.quota_items()
        if item["pk"]["S"].startswith("calls#")
        for k, v in item.items()
        if k.startswith("m_") and k == f"m_{int(time.time()) // 86400}"
    )
