"""No call runs unwatched for long, and a call setup that fails keeps nothing, through the real
handler (moto, the fake internet, a stubbed start of the watcher): the answer waits for the
watcher's attach, the backstop ends a call no watcher holds, and anything unexpected while a
call is placed gives back everything it took and hangs up what OpenAI placed."""

from __future__ import annotations

import calendar
import time
from typing import Any

import pytest
from botocore.stub import Stubber
from token_vendor.core.ids import CallId
from token_vendor.core.lease import LeaseStore

from tests.support.aws import Aws
from tests.support.env import TABLE
from tests.support.handler import (
    Reply,
    call_id_of,
    expect_watcher_start,
    fire,
    hang_up,
    listing,
    mint_units,
    schedules,
    used_seconds,
)
from tests.support.identity import Issuer
from tests.support.internet import FakeInternet


def placed_with(make_watched_handler: Any, place: Any, env: dict[str, str], **kw: Any) -> Any:
    handler, lambda_client = make_watched_handler(env, **kw)
    with Stubber(lambda_client) as stub:
        expect_watcher_start(stub)
        reply = place(with_handler=handler)
    return handler, reply


def backstop(aws: Aws) -> dict[str, Any]:
    (found,) = [s for s in schedules(aws) if s["Name"].startswith("watch-")]
    return found


def test_the_answer_waits_for_the_watcher_to_hold_the_call(
    make_watched_handler: Any, place: Any, aws: Aws
) -> None:
    """A watcher that takes 0.5 s to attach (a cold one): the offer is answered only then."""
    started = time.monotonic()
    _, reply = placed_with(make_watched_handler, place, {}, attach_after=0.5)
    took = time.monotonic() - started

    assert reply.status == 201 and 0.5 <= took < 2
    lease = LeaseStore(TABLE, aws.dynamodb).state(CallId(call_id_of(reply)))
    assert lease.attached


def test_a_watcher_late_past_the_wait_is_not_waited_for_and_the_backstop_ends_the_call(
    make_watched_handler: Any, place: Any, aws: Aws, issuer: Issuer, internet: FakeInternet
) -> None:
    """The watcher never says it attached: the answer goes out after the wait (the window the
    docs bound), and the backstop, when it fires, ends the call as unwatched."""
    started = time.monotonic()
    handler, reply = placed_with(
        make_watched_handler, place, {"WATCHER_ANSWER_WAIT_SECONDS": "0.4"}, attach=False
    )
    took = time.monotonic() - started
    call_id = call_id_of(reply)

    assert reply.status == 201 and 0.4 <= took < 3
    assert fire(handler, backstop(aws)) == {"status": "ended", "call_id": call_id}
    assert internet.calls[call_id]["live"] is False
    ended = hang_up(handler, issuer, call_id)
    assert ended.json["end_reason"] == "unwatched"  # the page words it
    assert listing(handler, issuer).json["data"] == []


def test_the_backstop_leaves_a_watched_call_alone(
    make_watched_handler: Any, place: Any, aws: Aws, internet: FakeInternet
) -> None:
    handler, reply = placed_with(make_watched_handler, place, {})

    assert fire(handler, backstop(aws))["status"] == "watched"
    assert internet.live_calls() == [call_id_of(reply)]


def test_an_operator_may_let_the_backstop_find_an_unwatched_call_and_leave_it(
    make_watched_handler: Any, place: Any, aws: Aws, internet: FakeInternet
) -> None:
    env = {"WATCHER_ANSWER_WAIT_SECONDS": "0", "UNWATCHED_CALLS": "allow"}
    handler, reply = placed_with(make_watched_handler, place, env, attach=False)

    assert fire(handler, backstop(aws))["status"] == "allowed"
    assert internet.live_calls() == [call_id_of(reply)]


def test_the_backstop_fires_after_the_watchers_attach_window(
    make_watched_handler: Any, place: Any, aws: Aws
) -> None:
    before = time.time()
    placed_with(make_watched_handler, place, {"WATCHER_ATTACH_SECONDS": "45"})

    at = backstop(aws)["ScheduleExpression"]  # at(YYYY-MM-DDTHH:MM:SS), a minute boundary
    fires = calendar.timegm(time.strptime(at[3:-1], "%Y-%m-%dT%H:%M:%S"))
    assert before + 45 < fires <= before + 45 + 10 + 60 and fires % 60 == 0


def test_a_failed_delivery_goes_to_the_dead_letter_queue_when_one_is_named(
    make_watched_handler: Any, place: Any, aws: Aws
) -> None:
    queue = "arn:aws:sqs:us-east-1:123456789012:stack-hangup-failures"
    placed_with(make_watched_handler, place, {"HANGUP_FAILURES_QUEUE_ARN": queue})

    assert {s["Target"]["DeadLetterConfig"]["Arn"] for s in schedules(aws)} == {queue}


class Bug(Exception):
    """Something no test planned for: not one of the domain's errors."""


@pytest.mark.parametrize("where", ["wait", "record"])
def test_anything_unexpected_while_placing_gives_back_everything_and_hangs_up(
    make_watched_handler: Any,
    place: Any,
    aws: Aws,
    issuer: Issuer,
    internet: FakeInternet,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """Twice in a row would have locked the user out (two slots held by calls that never
    existed): the third call goes through, with the whole day's minutes."""
    from token_vendor.core.ledger import CallLedger

    def bug(*_: Any, **__: Any) -> None:
        raise Bug("planted")

    target: type = LeaseStore if where == "wait" else CallLedger
    units = mint_units(aws)
    handler, lambda_client = make_watched_handler()
    replies: list[Reply] = []
    with Stubber(lambda_client) as stub, monkeypatch.context() as patched:
        patched.setattr(target, "state" if where == "wait" else "record", bug)
        for _ in range(2):
            expect_watcher_start(stub)
            replies.append(place(with_handler=handler))

    assert [r.status for r in replies] == [500, 500] if where == "wait" else [503, 503]
    assert "planted" not in replies[0].body and "Traceback" not in replies[0].body
    assert internet.live_calls() == [] and len(internet.hung_up) == 2
    assert schedules(aws) == [] and used_seconds(aws) == 0 and mint_units(aws) == units
    with Stubber(lambda_client) as stub:
        expect_watcher_start(stub)
        third = place(with_handler=handler)
    assert third.status == 201
    assert listing(handler, issuer).json["minutes_left_today"] == 50  # the third's 10 minutes
