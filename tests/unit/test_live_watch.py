"""The GPT-Live watch's decisions, with a scripted sideband and moto's spend ledger: voice
charged from cumulative seconds exactly, backend responses once each, the end from
`session.closed` (settled without a hangup), the budget's goodbye and close, the policy, and
every way a close can go wrong."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from token_vendor.core.ending import EndReason
from token_vendor.core.pricing import (
    DEFAULT_PRICES_FILE,
    backend_cost,
    live_usage_cost,
    load_prices,
)
from token_vendor.core.spend import VOICE_TOTAL
from token_vendor.watcher.live import CLOSE_WAIT_SECONDS, GOODBYE, GOODBYE_GRACE_SECONDS
from token_vendor.watcher.watch import Outcome

from tests.support.aws import Aws
from tests.support.clock import Clock
from tests.support.watch import (
    LIVE_CALL,
    NOW,
    USER,
    Answering,
    Step,
    live_watcher,
    never,
    timing,
)

PRICES = load_prices(DEFAULT_PRICES_FILE, "", [])
LIVE_PRICE = PRICES.for_live("gpt-live-1.1")[0]
UP_FRONT = live_usage_cost({"seconds": 15}, LIVE_PRICE)  # 12,500: what each create bills


def used(seconds: float, active: float | None = None, paused: float = 0) -> dict[str, Any]:
    active = seconds - paused if active is None else active
    return {"seconds": seconds, "active_seconds": active, "paused_seconds": paused}


def usage_updated(seconds: float, **kw: float) -> dict[str, Any]:
    return {"type": "session.usage.updated", "event_id": "e", "usage": used(seconds, **kw)}


def closed(reason: str, seconds: float, **kw: float) -> dict[str, Any]:
    return {
        "type": "session.closed",
        "reason": reason,
        "session": {"id": LIVE_CALL, "model": "gpt-live-1.1", "status": "active"},
        "usage": used(seconds, **kw),
    }


def backend(kind: str, response_id: str, **tokens: int) -> dict[str, Any]:
    usage = {
        "input_tokens": tokens.get("inputs", 0),
        "input_tokens_details": {"cached_tokens": tokens.get("cached", 0)},
        "output_tokens": tokens.get("outputs", 0),
    }
    return {
        "type": "response.event",
        "delegation_id": "del_1",
        "event": {"type": kind, "response": {"id": response_id, "usage": usage}},
    }


def sent_types(events: Answering) -> list[str]:
    return [event["type"] for event in events.sent]


# --- money ---------------------------------------------------------------------------------


def test_voice_is_charged_from_cumulative_seconds_to_the_micro_dollar(aws: Aws) -> None:
    """Totals at any cadence, repeated, active and standby: the call's meter ends at the cost
    of the final total, the 15 s billed at the create counted toward it, not on top."""
    clock = Clock(NOW)
    final = used(47.3, active=39.1, paused=8.2)
    script: list[Step] = [
        usage_updated(1),
        usage_updated(16),
        usage_updated(31, paused=4),
        usage_updated(31, paused=4),  # the same total again: nothing more
        {"type": "audio"},  # an audio copy, dropped by the sideband adapter
        {"type": "session.closed", "reason": "remote_hangup", "usage": final},
    ]
    watch, events, recorder, spend = live_watcher(aws, clock, script)

    assert watch.run(timing(), never) is Outcome.ENDED

    assert spend.call_total(LIVE_CALL) == live_usage_cost(final, LIVE_PRICE)
    assert spend.today(USER).user_micros == live_usage_cost(final, LIVE_PRICE)
    assert recorder.ended == [(LIVE_CALL, EndReason.CLOSED)]
    assert recorder.settled_only == [True]  # session.closed: over upstream, only settled
    assert "session.close" not in sent_types(events)


def test_the_up_front_charge_of_the_create_is_not_charged_twice(aws: Aws) -> None:
    clock = Clock(NOW)
    watch, _, _, spend = live_watcher(aws, clock, [closed("remote_hangup", 9)])
    # The token function charged the create's 15 s before the watcher started.
    spend.charge_total(call_id=LIVE_CALL, user=USER, counter=VOICE_TOTAL, total_micros=UP_FRONT)

    assert watch.run(timing(), never) is Outcome.ENDED
    assert spend.call_total(LIVE_CALL) == UP_FRONT  # 9 s used: still the 15 s prepaid


def test_each_delegated_response_is_charged_once_at_its_model(aws: Aws) -> None:
    clock = Clock(NOW)
    script: list[Step] = [
        backend("response.output_item.done", "resp_1", outputs=999),  # not terminal
        backend("response.completed", "resp_1", inputs=1000, cached=400, outputs=200),
        backend("response.completed", "resp_1", inputs=1000, cached=400, outputs=200),
        backend("response.incomplete", "resp_2", inputs=50, outputs=16),
        backend("response.failed", "resp_3", inputs=10),
        closed("remote_hangup", 5),
    ]
    watch, _, _, spend = live_watcher(aws, clock, script)

    assert watch.run(timing(), never) is Outcome.ENDED

    price = PRICES.for_backend("gpt-5-mini")[0]
    expected = sum(
        backend_cost(event["event"]["response"]["usage"], price)
        for event in (script[1], script[3], script[4])
        if isinstance(event, dict)
    )
    assert spend.call_total(LIVE_CALL) == UP_FRONT + expected


@pytest.mark.parametrize(
    ("reason", "end_reason"),
    [
        ("expired", EndReason.SESSION_EXPIRED),
        ("content", EndReason.CONTENT),
        ("remote_hangup", EndReason.CLOSED),
        ("connection_lost", EndReason.CLOSED),
        ("close_requested", EndReason.CLOSED),  # someone else closed it: their claim stands
        ("something_new", EndReason.CLOSED),
    ],
)
def test_session_closed_says_why_the_session_ended(
    aws: Aws, reason: str, end_reason: EndReason
) -> None:
    watch, events, recorder, _ = live_watcher(aws, Clock(NOW), [closed(reason, 20)])
    assert watch.run(timing(), never) is Outcome.ENDED
    assert recorder.ended == [(LIVE_CALL, end_reason)] and recorder.settled_only == [True]
    assert events.sent == [] and recorder.claims == []


# --- the budget ------------------------------------------------------------------------------


def speaking(event: dict[str, Any]) -> list[Step]:
    """The model accepts the goodbye and says it."""
    return [
        {"type": "session.instructions.appended", "start_ms": 0, "end_ms": 10},
        {"type": "session.output_transcript.delta", "delta": "Your budget is used up."},
        {"type": "session.output_transcript.delta", "delta": " Goodbye!"},
    ]


def test_a_spent_budget_gets_a_goodbye_then_a_close_and_voice_stays_within_it(aws: Aws) -> None:
    """0.10 USD a day: the 15 s up front leaves 87,500 micro-dollars, about 105 s of voice.
    The goodbye is asked for early enough that it, and the close, fit in what is left."""
    clock = Clock(NOW)

    def closing(event: dict[str, Any]) -> list[Step]:
        # OpenAI counts the session's every second so far as active.
        return [closed("close_requested", round(clock.now - NOW + 0.5, 1))]

    watch, events, recorder, spend = live_watcher(
        aws,
        clock,
        [None] * 400,
        limits="usd/day=0.10",
        answers={"session.instructions.append": speaking, "session.close": closing},
    )

    assert watch.run(timing(), never) is Outcome.ENDED

    assert sent_types(events) == ["session.instructions.append", "session.close"]
    goodbye = events.sent[0]
    assert goodbye["content"] == GOODBYE and goodbye["delegation_id"] is None
    assert recorder.claims == [(LIVE_CALL, EndReason.SPEND_LIMIT)]  # before the close
    assert recorder.ended == [(LIVE_CALL, EndReason.SPEND_LIMIT)]
    assert recorder.settled_only == [True]
    spent = spend.today(USER).user_micros
    assert 100_000 - 15 * 834 < spent <= 100_000  # most of the budget used, none of it crossed
    assert events.sent_at[1] - events.sent_at[0] < 3  # closed once the goodbye was said
    assert ("BudgetHangups", 1, {"profile": "live-assistant"}) in recorder.counts


def test_a_goodbye_never_spoken_still_closes_after_its_grace(aws: Aws) -> None:
    clock = Clock(NOW)
    watch, events, recorder, _ = live_watcher(
        aws,
        clock,
        [None] * 400,
        limits="usd/day=0.03",
        answers={"session.close": lambda _: [closed("close_requested", 30)]},
    )

    assert watch.run(timing(), never) is Outcome.ENDED

    assert sent_types(events) == ["session.instructions.append", "session.close"]
    waited = events.sent_at[1] - events.sent_at[0]
    assert GOODBYE_GRACE_SECONDS <= waited < GOODBYE_GRACE_SECONDS + 1
    assert recorder.ended == [(LIVE_CALL, EndReason.SPEND_LIMIT)]


def test_a_backend_response_that_crosses_the_budget_says_goodbye_at_once(aws: Aws) -> None:
    clock = Clock(NOW)
    script: list[Step] = [
        backend("response.completed", "resp_1", inputs=10_000, outputs=20_000),  # 0.0425 USD
        None,
    ]
    watch, events, _, _ = live_watcher(
        aws,
        clock,
        script,
        limits="usd/day=0.05",
        answers={"session.instructions.append": lambda _: [closed("remote_hangup", 3)]},
    )

    assert watch.run(timing(), never) is Outcome.ENDED
    assert sent_types(events) == ["session.instructions.append"]
    assert events.sent_at[0] == NOW  # at the charge, not later


# --- closing, when it does not go to plan ----------------------------------------------------


def test_a_close_with_no_session_closed_falls_back_to_the_closer(aws: Aws) -> None:
    """No `session.closed` within CLOSE_WAIT_SECONDS: the end goes through the ender (whose
    closer attaches a sideband of its own), not a settle on faith."""
    clock = Clock(NOW)
    watch, events, recorder, _ = live_watcher(aws, clock, [None] * 100)
    watch.job = replace(watch.job, ends_at=NOW + 2)

    assert watch.run(timing(), never) is Outcome.ENDED

    assert sent_types(events) == ["session.close"]
    assert recorder.claims == [(LIVE_CALL, EndReason.DEADLINE)]
    assert recorder.ended == [(LIVE_CALL, EndReason.DEADLINE)]
    assert recorder.settled_only == [False]
    assert clock.now - events.sent_at[0] >= CLOSE_WAIT_SECONDS


def test_a_sideband_that_drops_is_attached_again(aws: Aws) -> None:
    clock = Clock(NOW)
    again = Answering(clock, [usage_updated(40), closed("remote_hangup", 41)])
    watch, first, recorder, spend = live_watcher(
        aws, clock, [usage_updated(20)], reopen=lambda: again
    )

    assert watch.run(timing(), never) is Outcome.ENDED

    assert first.closed and again.closed
    assert ("SidebandReattached", 1, {"profile": "live-assistant"}) in recorder.counts
    assert recorder.ended == [(LIVE_CALL, EndReason.CLOSED)] and recorder.settled_only == [True]
    assert spend.call_total(LIVE_CALL) == live_usage_cost(used(41), LIVE_PRICE)


def test_a_sideband_that_cannot_be_attached_again_ends_the_session(aws: Aws) -> None:
    """Fail closed: a Live session nobody can watch is closed (by the ender's closer)."""
    watch, _, recorder, _ = live_watcher(aws, Clock(NOW), [usage_updated(20)], reopen=lambda: None)

    assert watch.run(timing(), never) is Outcome.ENDED
    assert recorder.ended == [(LIVE_CALL, EndReason.CLOSED)]
    assert recorder.settled_only == [False]  # not known to be over: the closer closes it


# --- the policy ------------------------------------------------------------------------------


def changed_backend(**responses: Any) -> dict[str, Any]:
    settings = {"model": "gpt-5-mini", "instructions": "Look things up.", "tools": []}
    return {
        "type": "session.updated",
        "session": {
            "id": LIVE_CALL,
            "model": "gpt-live-1.1",
            "delegation": {"type": "responses", "responses": settings | responses},
        },
    }


def test_a_backend_switched_by_the_browser_is_put_back(aws: Aws) -> None:
    script: list[Step] = [
        changed_backend(),  # as the profile has it: nothing to do
        changed_backend(model="gpt-5", tools=[{"type": "web_search"}]),
        closed("remote_hangup", 5),
    ]
    watch, events, recorder, _ = live_watcher(aws, Clock(NOW), script)

    assert watch.run(timing(), never) is Outcome.ENDED

    assert sent_types(events) == ["session.update"]
    restored = events.sent[0]["session"]["delegation"]
    assert restored["responses"]["model"] == "gpt-5-mini" and restored["responses"]["tools"] == []
    assert ("PolicyDeviations", 1, {"profile": "live-assistant", "action": "restore"}) in (
        recorder.counts
    )


def test_a_hangup_profile_closes_a_session_whose_backend_changed(aws: Aws) -> None:
    watch, events, recorder, _ = live_watcher(
        aws,
        Clock(NOW),
        [changed_backend(model="gpt-5"), None, None],
        on_change="hangup",
        answers={"session.close": lambda _: [closed("close_requested", 6)]},
    )

    assert watch.run(timing(), never) is Outcome.ENDED
    assert sent_types(events) == ["session.close"]
    assert recorder.claims == [(LIVE_CALL, EndReason.POLICY)]
    assert recorder.ended == [(LIVE_CALL, EndReason.POLICY)]
