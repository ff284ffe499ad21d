"""The operator's per-user controls: the item as written and read (moto), and the watch loop
that ends a call when its user is blocked or the operator ends it, polled every 2 s, with the
user's own budget on every charge."""

from __future__ import annotations

import logging

from token_vendor.core.controls import ControlReader, ControlWriter, Override, parse_controls
from token_vendor.core.ending import EndReason
from token_vendor.core.spend import SpendLedger, SpendLimits
from token_vendor.watcher.controls import CONTROL_POLL_SECONDS, UserControls
from token_vendor.watcher.watch import Outcome

from tests.support.aws import Aws
from tests.support.clock import Clock
from tests.support.env import TABLE
from tests.support.watch import CALL, NOW, USER, Step, done, never, timing, updated, watcher


def test_what_the_writer_writes_the_reader_reads(aws: Aws) -> None:
    writer, reader = (
        ControlWriter(TABLE, aws.dynamodb, lambda: NOW),
        ControlReader(TABLE, aws.dynamodb),
    )
    assert not reader.read(USER).blocked  # no item: no controls

    writer.block(USER, "abuse")
    writer.set_override(USER, "spend_limits", "usd/day=5", int(NOW) + 60)
    writer.end_call(USER, CALL)
    controls = reader.read(USER)

    assert (controls.blocked_at, controls.blocked_why) == (int(NOW), "abuse")
    assert controls.overrides == {"spend_limits": Override("usd/day=5", int(NOW) + 60)}
    assert controls.override("spend_limits", NOW + 59) == "usd/day=5"
    assert controls.override("spend_limits", NOW + 60) is None  # expired
    assert controls.end_calls == {CALL}

    writer.unblock(USER)
    writer.clear_override(USER, "spend_limits")
    writer.forget_call(USER, CALL)
    assert reader.read(USER) == parse_controls({"pk": {"S": f"control#{USER}"}})


def test_a_malformed_item_holds_no_control() -> None:
    item = {
        "blocked": {"N": "soon"},
        "o_quotas": {"S": "5/day"},  # no expiry: skipped
        "o_spend_limits": {"S": "usd/day=1"},
        "o_spend_limits_until": {"N": "x"},
        "o_colour": {"S": "red"},
    }
    controls = parse_controls(item)
    assert not controls.blocked and controls.overrides == {}


def blocked_later(aws: Aws, at: float, clock: Clock) -> Step:
    """A script step: the operator blocks the user when the call's clock reads `at`."""

    def block() -> None:
        clock.now = max(clock.now, at)
        ControlWriter(TABLE, aws.dynamodb, clock).block(USER, "abuse")

    return block


def test_a_block_ends_the_call_at_the_next_poll(aws: Aws) -> None:
    clock = Clock(NOW)
    script: list[Step] = [updated(), None, blocked_later(aws, NOW + 1, clock)] + [None] * 20
    watch, _, recorder, _ = watcher(aws, clock, script)
    spend = SpendLedger(TABLE, SpendLimits(), aws.dynamodb, clock=clock)
    polls = UserControls(ControlReader(TABLE, aws.dynamodb), USER, spend, None, recorder,
                         logging.getLogger("test"), clock=clock)  # fmt: skip
    watch.user_controls = polls

    assert watch.run(timing(), never) is Outcome.ENDED

    assert recorder.ended == [(CALL, EndReason.BLOCKED)]
    assert recorder.names().count("BlockedHangups") == 1
    # Seen at the first poll after the block: within CONTROL_POLL_SECONDS and one loop.
    assert clock.now - (NOW + 1) <= CONTROL_POLL_SECONDS + 0.5


def test_the_operator_ends_one_call(aws: Aws) -> None:
    clock = Clock(NOW)
    ControlWriter(TABLE, aws.dynamodb, clock).end_call(USER, CALL)
    watch, _, recorder, _ = watcher(aws, clock, [updated()] + [None] * 5)
    spend = SpendLedger(TABLE, SpendLimits(), aws.dynamodb, clock=clock)
    watch.user_controls = UserControls(ControlReader(TABLE, aws.dynamodb), USER, spend, None,
                                       recorder, logging.getLogger("test"), clock=clock)  # fmt: skip

    assert watch.run(timing(), never) is Outcome.ENDED
    assert recorder.ended == [(CALL, EndReason.OPERATOR)]
    assert "BlockedHangups" not in recorder.names()


def test_each_charge_is_judged_against_the_user_s_own_budget(aws: Aws) -> None:
    clock = Clock(NOW)
    spend = SpendLedger(TABLE, SpendLimits(user_micros=2_000_000), aws.dynamodb, clock=clock)
    polls = UserControls(ControlReader(TABLE, aws.dynamodb), USER, spend, 500_000, None,
                         logging.getLogger("test"), clock=clock)  # fmt: skip

    charge = polls.charge(call_id=CALL, user=USER, event_key="e1", micros=100)
    assert charge.day is not None and charge.day.limits.user_micros == 500_000  # the plan's

    ControlWriter(TABLE, aws.dynamodb, clock).set_override(
        USER, "spend_limits", "usd/day=7", int(NOW) + 60
    )
    polls.blocked(NOW)  # a poll
    charge = polls.charge(call_id=CALL, user=USER, event_key="e2", micros=100)
    assert charge.day is not None and charge.day.limits.user_micros == 7_000_000
    clock.now = NOW + 60
    charge = polls.charge(call_id=CALL, user=USER, event_key="e3", micros=100)
    assert charge.day is not None and charge.day.limits.user_micros == 500_000  # expired


def test_a_user_blocked_before_the_watch_begins_is_ended_at_once(aws: Aws) -> None:
    """Blocked from the start: the call ends at the first loop, before any response."""
    clock = Clock(NOW)
    ControlWriter(TABLE, aws.dynamodb, clock).block(USER, "")
    watch, _, recorder, _ = watcher(aws, clock, [updated(), done("resp_1", text_out=10)])
    spend = SpendLedger(TABLE, SpendLimits(), aws.dynamodb, clock=clock)
    watch.user_controls = UserControls(ControlReader(TABLE, aws.dynamodb), USER, spend, None,
                                       recorder, logging.getLogger("test"), clock=clock)  # fmt: skip

    assert watch.run(timing(), never) is Outcome.ENDED
    assert recorder.ended == [(CALL, EndReason.BLOCKED)] and clock.now == NOW
