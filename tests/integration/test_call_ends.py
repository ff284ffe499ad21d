"""Why a call ended, as the hangup route tells the page (`end_reason`): the page hangs up
through the API after every drop and words its sentence from the answer. Through the real
handler against moto and the fake OpenAI."""

from __future__ import annotations

from typing import Any

import pytest
from token_vendor.core.deadline import Deadline
from token_vendor.core.ending import CallEnder, CallRecord, EndReason
from token_vendor.core.ids import CallId
from token_vendor.core.ledger import CallLedger
from token_vendor.core.openai_key import OpenAIKeyStore
from token_vendor.core.openai_rest import RealtimeRest
from token_vendor.core.settings import CallLimits

from tests.support.aws import Aws
from tests.support.env import SECRET_ID, TABLE
from tests.support.handler import call_id_of, fire, hang_up, listing, schedules, spend, user_hash
from tests.support.identity import Issuer
from tests.support.internet import OPENAI_BASE, FakeInternet, openai_error


def ledger(aws: Aws) -> CallLedger:
    return CallLedger(TABLE, CallLimits(concurrent=2, seconds_per_day=3600), aws.dynamodb)


def record(aws: Aws, user: str, call_id: str) -> CallRecord:
    (call,) = [c for c in ledger(aws).view(user_hash(user), Deadline(5)).calls if c.id == call_id]
    return call


def test_the_owners_hangup_says_hangup_every_time(place: Any, handler: Any, issuer: Issuer) -> None:
    call_id = call_id_of(place())

    first = hang_up(handler, issuer, call_id)
    again = hang_up(handler, issuer, call_id)

    assert first.json["end_reason"] == "hangup" and again.json["end_reason"] == "hangup"


def test_after_the_deadline_the_pages_hangup_learns_it_was_the_deadline(
    place: Any, handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    call_id = call_id_of(place())
    (schedule,) = schedules(aws)
    assert fire(handler, schedule)["status"] == "settled"

    answer = hang_up(handler, issuer, call_id)  # the page, once its connection dropped

    assert answer.status == 200 and answer.json["end_reason"] == "deadline"
    assert internet.hung_up == [call_id]  # by the deadline alone


def test_a_deadline_between_its_hangup_and_its_settle_is_still_the_deadline(
    place: Any, handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    """The browser notices the hangup at once and may ask before the deadline's settle
    lands: the deadline was recorded before it hung up, so the answer is the same."""
    call_id = call_id_of(place())
    ledger(aws).claim_end(record(aws, "user-1", call_id), EndReason.DEADLINE, Deadline(5))
    internet.calls[call_id]["live"] = False  # the deadline's upstream hangup

    answer = hang_up(handler, issuer, call_id)

    assert answer.json["end_reason"] == "deadline"
    assert listing(handler, issuer).json["data"] == []  # settled by the page's hangup
    assert schedules(aws) == []  # the page's hangup removed the schedule too


def test_a_call_gone_upstream_before_its_deadline_ended_because_the_line_closed(
    place: Any, handler: Any, issuer: Issuer, internet: FakeInternet
) -> None:
    call_id = call_id_of(place())
    internet.calls[call_id]["live"] = False  # ended upstream: the browser's peer closed

    answer = hang_up(handler, issuer, call_id)

    assert answer.json["end_reason"] == "closed"
    assert answer.json["minutes_left_today"] >= 59  # the unused minutes came back


def test_a_call_gone_upstream_while_the_budget_is_spent_ended_for_the_budget(
    make_handler: Any, place: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    """Before the watcher records its cause (or when its settle lost the race)."""
    handler = make_handler(SPEND_LIMITS="usd/day=1.00")
    call_id = call_id_of(place(with_handler=handler))
    spend(aws, "user-1", 1_000_000, "usd/day=1.00")
    internet.calls[call_id]["live"] = False  # the watcher's hangup after the goodbye

    answer = hang_up(handler, issuer, call_id)

    assert answer.json["end_reason"] == "spend_limit"


@pytest.mark.parametrize("reason", ["policy", "spend_limit", "closed", "session_expired"])
def test_the_watchers_recorded_cause_is_what_the_page_hears(
    place: Any, handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet, reason: str
) -> None:
    """What the watcher passes to the ledger's settle (`reason=`) is the answer."""
    call_id = call_id_of(place())
    internet.calls[call_id]["live"] = False
    ledger(aws).settle(record(aws, "user-1", call_id), EndReason(reason), Deadline(5))

    answer = hang_up(handler, issuer, call_id)

    assert answer.json["end_reason"] == reason
    assert internet.hung_up == []  # nothing more was hung up


def test_a_watcher_that_settles_during_the_pages_hangup_is_the_answer(
    place: Any, handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    """The race after a drop: the watcher recorded its cause and hung up (the drop the page
    saw), then settles the call (the minutes back) while the page's hangup is on its way
    upstream. The page hears the watcher's cause and the minutes left after its settle, not
    the ones read before."""
    call_id = call_id_of(place())
    live = record(aws, "user-1", call_id)
    ledger(aws).claim_end(live, EndReason.POLICY, Deadline(5))
    internet.calls[call_id]["live"] = False  # the watcher's upstream hangup

    def watcher_settles_first(request: Any) -> Any:
        ledger(aws).settle(live, EndReason.POLICY, Deadline(5))
        return openai_error(404, "call_not_found", "No such call.")

    internet.openai_script = [watcher_settles_first]

    answer = hang_up(handler, issuer, call_id)

    assert answer.json["end_reason"] == "policy"
    assert answer.json["minutes_left_today"] >= 59


@pytest.mark.parametrize("reason", [r for r in EndReason if r is not EndReason.HANGUP])
def test_the_watcher_ending_a_call_tells_the_page_why(
    place: Any,
    handler: Any,
    issuer: Issuer,
    aws: Aws,
    internet: FakeInternet,
    reason: EndReason,
) -> None:
    """The watcher's ender (core.ending.CallEnder, as the watcher builds it) records its cause
    before it hangs up, so the page, whose call drops at that hangup, hears the cause, not a
    guess."""
    call_id = call_id_of(place())

    watchers_ender(aws, internet).end(
        user=user_hash("user-1"), call_id=CallId(call_id), reason=reason, deadline=Deadline(15)
    )

    assert internet.hung_up == [call_id]
    assert record(aws, "user-1", call_id).done
    answer = hang_up(handler, issuer, call_id)
    assert answer.json["end_reason"] == reason
    assert answer.json["minutes_left_today"] >= 59


def watchers_ender(aws: Aws, internet: FakeInternet) -> CallEnder:
    """The call's watcher's own ender, reaching the fake OpenAI and moto like the function."""
    keys = OpenAIKeyStore(SECRET_ID, aws.secretsmanager)
    return CallEnder(ledger(aws), RealtimeRest(OPENAI_BASE, internet.client(), keys))


@pytest.mark.parametrize("repeats", [1, 3])
def test_the_owners_hangup_says_hangup_though_the_watcher_sees_the_line_close_first(
    place: Any,
    handler: Any,
    issuer: Issuer,
    aws: Aws,
    internet: FakeInternet,
    repeats: int,
) -> None:
    """The owner's upstream hangup closes the call's sideband; its watcher then ends the call
    as `closed` (claim, hangup, settle) before the route's own writes land. The owner did it:
    the route claimed `hangup` before its upstream hangup, so the first cause is the owner's,
    in its answer, in the ledger, and in every repeated hangup."""
    call_id = call_id_of(place())
    ender = watchers_ender(aws, internet)

    def upstream_hangup_then_the_watcher(request: Any) -> Any:
        ended = internet.hang_up(call_id)  # the route's hangup ends the call upstream...
        ender.end(  # ...the sideband closes
            user=user_hash("user-1"),
            call_id=CallId(call_id),
            reason=EndReason.CLOSED,
            deadline=Deadline(15),
        )
        return ended

    internet.openai_script = [upstream_hangup_then_the_watcher]

    answer = hang_up(handler, issuer, call_id)
    again = [hang_up(handler, issuer, call_id) for _ in range(repeats)]

    assert answer.status == 200 and answer.json["end_reason"] == "hangup"
    assert [a.json["end_reason"] for a in again] == ["hangup"] * repeats
    assert record(aws, "user-1", call_id).reason == "hangup"
    assert answer.json["minutes_left_today"] >= 59  # settled once, by whichever came first
    assert internet.hung_up == [call_id]


def test_a_hangup_claimed_for_a_call_gone_before_it_is_replaced_by_the_inferred_cause(
    place: Any, handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    """The route claims `hangup` before it knows the call was gone upstream already; the
    ledger must not keep that claim: it is replaced by the cause inferred (`closed`)."""
    call_id = call_id_of(place())
    internet.calls[call_id]["live"] = False  # the browser's peer closed before the hangup

    answer = hang_up(handler, issuer, call_id)

    assert answer.json["end_reason"] == "closed"
    assert record(aws, "user-1", call_id).reason == "closed"
    assert hang_up(handler, issuer, call_id).json["end_reason"] == "closed"


def test_a_failed_upstream_hangup_withdraws_the_owners_claim(
    place: Any, handler: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    """The call lives on (503): whoever ends it later records its own cause."""
    call_id = call_id_of(place())
    internet.openai_script = [lambda request: openai_error(500, "server_error", "Oops.")] * 4

    assert hang_up(handler, issuer, call_id).status == 503

    assert record(aws, "user-1", call_id).reason is None


def store_bogus_reason(aws: Aws, user: str, call_id: str) -> None:
    """A cause this code does not know (a newer version's, before a rollback)."""
    slot = record(aws, user, call_id).slot
    aws.dynamodb.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"calls#{user_hash(user)}"}},
        UpdateExpression="SET #why = :why",
        ExpressionAttributeNames={"#why": f"s{slot}_why"},
        ExpressionAttributeValues={":why": {"S": "meteor"}},
    )


@pytest.mark.parametrize("settled_first", [False, True])
def test_a_stored_cause_this_code_does_not_know_is_reported_as_closed_never_a_500(
    place: Any,
    handler: Any,
    issuer: Issuer,
    aws: Aws,
    internet: FakeInternet,
    settled_first: bool,
) -> None:
    call_id = call_id_of(place())
    store_bogus_reason(aws, "user-1", call_id)
    if settled_first:
        internet.calls[call_id]["live"] = False
        ledger(aws).settle(record(aws, "user-1", call_id), EndReason.POLICY, Deadline(5))

    answers = [hang_up(handler, issuer, call_id) for _ in range(2)]

    assert [(a.status, a.json["end_reason"]) for a in answers] == [(200, "closed")] * 2
    assert record(aws, "user-1", call_id).done
    assert answers[0].json["minutes_left_today"] >= 59


def test_the_hangup_log_says_why_the_call_ended_not_who_asked(
    place: Any, handler: Any, issuer: Issuer, internet: FakeInternet, logs: Any
) -> None:
    """The owner asked, but the line had closed first: the log must not say the user ended
    it."""
    call_id = call_id_of(place())
    internet.calls[call_id]["live"] = False

    hang_up(handler, issuer, call_id)

    (logged,) = [r for r in logs.records() if r.get("message") == "call hung up"]
    assert logged["end_reason"] == "closed" and "ended_by" not in logged


def test_a_refused_next_call_does_not_erase_why_the_last_one_ended(
    make_handler: Any, place: Any, issuer: Issuer, aws: Aws, internet: FakeInternet
) -> None:
    """The watcher ends a call at the budget; the user's next call is refused (429), though
    its admission took the ended call's slot for a moment: the owner's hangup of the ended
    call (the page, after its drop) still answers why it ended, not 404."""
    handler = make_handler(SPEND_LIMITS="usd/day=1.00", CALL_LIMITS="concurrent=1,minutes/day=60")
    call_id = call_id_of(place(with_handler=handler))
    spend(aws, "user-1", 1_000_000, "usd/day=1.00")
    watchers_ender(aws, internet).end(
        user=user_hash("user-1"),
        call_id=CallId(call_id),
        reason=EndReason.SPEND_LIMIT,
        deadline=Deadline(15),
    )

    refused = place(with_handler=handler)
    answer = hang_up(handler, issuer, call_id)

    assert refused.status == 429 and refused.json["policy"] == "spend-user"
    assert answer.status == 200 and answer.json["end_reason"] == "spend_limit"
