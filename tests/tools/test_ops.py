"""The operator's command line (ops/) against moto: the usage report equals the spend ledger
to the micro-dollar, each control is written where the functions read it, and every wrong
table, stack, credential or user is one clear line (exit status 2)."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from token_vendor.core.controls import ControlReader
from token_vendor.core.deadline import Deadline
from token_vendor.core.ending import EndReason
from token_vendor.core.ids import CallId, UserId
from token_vendor.core.ledger import CallLedger
from token_vendor.core.settings import CallLimits
from token_vendor.core.spend import SpendLedger, SpendLimits

from ops.__main__ import main
from ops.users import user_id
from tests.support.aws import Aws, moto_aws, use_fake_aws
from tests.support.env import TABLE

ANN = UserId("a" * 32)
BOB = UserId("b" * 32)
CAROL = UserId("c" * 32)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    use_fake_aws(monkeypatch)
    with moto_aws() as aws:
        yield aws


@pytest.fixture
def session(aws: Aws) -> Any:
    return boto3.session.Session(region_name="us-east-1")


def ops(session: Any, *args: str, capsys: Any) -> tuple[int, str, str]:
    status = main(["--table", TABLE, *args], session=session)
    out, err = capsys.readouterr()
    return status, out, err


def spend(aws: Aws) -> SpendLedger:
    return SpendLedger(TABLE, SpendLimits(user_micros=2_000_000), aws.dynamodb)


def ledger(aws: Aws) -> CallLedger:
    return CallLedger(TABLE, CallLimits(2, 3600), aws.dynamodb)


def test_the_usage_report_equals_the_spend_ledger_to_the_micro_dollar(
    aws: Aws, session: Any, capsys: Any
) -> None:
    meter = spend(aws)
    charges = {ANN: [123_457, 1, 999_999], BOB: [7, 31_415], CAROL: [1_000_001]}
    for user, amounts in charges.items():
        for n, micros in enumerate(amounts):
            meter.charge(
                call_id=CallId(f"rtc_{user[:4]}"), user=user, event_key=f"e{n}", micros=micros
            )
    now = time.time()
    calls = ledger(aws)
    for _ in range(2):
        calls.admit(ANN, int(now) + 300, Deadline(5))

    status, out, _ = ops(session, "usage", "--format", "json", capsys=capsys)

    assert status == 0
    rows = {r["user"]: r for r in json.loads(out)}
    for user in charges:
        ledger_micros = meter.today(user).user_micros
        assert rows[user]["spend_micros"] == ledger_micros == sum(charges[user])
        assert rows[user]["spend_usd"] == f"{ledger_micros / 1e6:.6f}"
    assert rows[ANN]["calls"] == 2 and 599 <= rows[ANN]["seconds"] <= 600
    assert [r["user"] for r in json.loads(out)] == [ANN, CAROL, BOB]  # biggest spender first


def test_top_n_and_csv(aws: Aws, session: Any, capsys: Any) -> None:
    meter = spend(aws)
    for user, micros in ((ANN, 5), (BOB, 50), (CAROL, 500)):
        meter.charge(call_id=CallId("rtc_x"), user=user, event_key=str(user), micros=micros)

    status, out, _ = ops(session, "usage", "--top", "2", "--format", "csv", capsys=capsys)

    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and [r["user"] for r in rows] == [CAROL, BOB]
    assert [r["spend_micros"] for r in rows] == ["500", "50"]


def test_block_and_unblock_write_what_the_functions_read(
    aws: Aws, session: Any, capsys: Any
) -> None:
    spend(aws).charge(call_id=CallId("rtc_1"), user=ANN, event_key="e", micros=1)
    reader = ControlReader(TABLE, aws.dynamodb)

    status, out, _ = ops(session, "block", ANN, "--reason", "abuse", capsys=capsys)
    # It cannot see the functions' settings: it says where the 403 holds, not that it will.
    assert status == 0 and "where USER_CONTROLS is on" in out and "0 live call(s)" in out
    assert reader.read(ANN).blocked and reader.read(ANN).blocked_why == "abuse"
    state = json.loads(ops(session, "user", ANN, capsys=capsys)[1])
    assert state["blocked"] is True and state["today"]["spend_micros"] == 1

    assert ops(session, "unblock", ANN, capsys=capsys)[0] == 0
    assert not reader.read(ANN).blocked


def test_an_override_is_checked_written_with_its_expiry_and_cleared(
    aws: Aws, session: Any, capsys: Any
) -> None:
    spend(aws).charge(call_id=CallId("rtc_1"), user=ANN, event_key="e", micros=1)
    reader = ControlReader(TABLE, aws.dynamodb)

    status, _, err = ops(
        session, "override", ANN, "spend_limits", "lots", "--for", "1d", capsys=capsys
    )
    assert status == 2 and "SPEND_LIMITS" in err and reader.read(ANN).overrides == {}

    before = time.time()
    status, _, _ = ops(
        session, "override", ANN, "call_limits", "concurrent=3,minutes/day=240", "--for", "2h",
        capsys=capsys,
    )  # fmt: skip
    override = reader.read(ANN).overrides["call_limits"]
    assert status == 0 and override.value == "concurrent=3,minutes/day=240"
    assert int(before) + 7200 <= override.until <= time.time() + 7200
    assert reader.read(ANN).override("call_limits", time.time()) is not None

    assert ops(session, "clear", ANN, "call_limits", capsys=capsys)[0] == 0
    assert reader.read(ANN).overrides == {}


def test_end_asks_the_watcher_and_reports_why_the_call_ended(
    aws: Aws, session: Any, capsys: Any
) -> None:
    calls = ledger(aws)
    reservation = calls.admit(ANN, int(time.time()) + 300, Deadline(5))
    calls.record(reservation, CallId("rtc_live"), Deadline(5))
    reader = ControlReader(TABLE, aws.dynamodb)

    def watcher() -> None:  # what the call's watcher does when its poll sees the request
        for _ in range(100):
            if "rtc_live" in reader.read(ANN).end_calls:
                call = calls.view(ANN, Deadline(5)).find("rtc_live")
                assert call is not None
                calls.claim_end(call, EndReason.OPERATOR, Deadline(5))
                calls.settle(call, EndReason.OPERATOR, Deadline(5))
                return
            time.sleep(0.05)

    listed = json.loads(ops(session, "calls", capsys=capsys)[1])
    assert [c["id"] for c in listed] == ["rtc_live"]
    thread = threading.Thread(target=watcher)
    thread.start()
    status, out, _ = ops(session, "end", ANN, "rtc_live", capsys=capsys)
    thread.join()

    assert status == 0 and "end_reason operator" in out
    assert reader.read(ANN).end_calls == frozenset()  # the request is taken out
    assert json.loads(ops(session, "calls", capsys=capsys)[1]) == []


def test_a_call_nobody_ends_is_reported_not_waited_for_forever(
    aws: Aws, session: Any, capsys: Any
) -> None:
    calls = ledger(aws)
    reservation = calls.admit(ANN, int(time.time()) + 300, Deadline(5))
    calls.record(reservation, CallId("rtc_live"), Deadline(5))

    status, _, err = ops(session, "end", ANN, "rtc_live", "--wait", "0.5", capsys=capsys)

    assert status == 2 and "not ended within 0.5 s" in err
    assert ops(session, "end", ANN, "rtc_gone", capsys=capsys)[2].startswith("ops: no live call")


def test_an_unknown_user_is_one_clear_line(aws: Aws, session: Any, capsys: Any) -> None:
    for args in (("user", ANN), ("block", ANN), ("unblock", ANN)):
        status, out, err = ops(session, *args, capsys=capsys)
        assert status == 2 and out == "" and f"unknown user {ANN}" in err
    assert ops(session, "block", ANN, "--force", capsys=capsys)[0] == 0


def test_a_subject_and_issuer_name_the_same_user_as_the_functions() -> None:
    from token_vendor.api.auth import Caller

    caller = Caller(issuer="https://idp.example", subject="alice", scopes=frozenset(), kid=None)
    assert user_id("alice", "https://idp.example") == caller.user_hash
    with pytest.raises(Exception, match="--issuer"):
        user_id("alice", None)


def test_a_wrong_table_or_stack_is_one_clear_line(aws: Aws, session: Any, capsys: Any) -> None:
    assert main(["--table", "nope", "usage"], session=session) == 2
    assert "no table named nope in us-east-1" in capsys.readouterr().err
    assert main(["--stack", "nope", "usage"], session=session) == 2
    assert "no stack named nope" in capsys.readouterr().err


def test_the_stack_s_output_names_the_table(aws: Aws, session: Any, capsys: Any) -> None:
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"QuotaTableName": {"Value": TABLE}},
    }
    session.client("cloudformation").create_stack(
        StackName="rtv", TemplateBody=json.dumps(template)
    )
    spend(aws).charge(call_id=CallId("rtc_1"), user=ANN, event_key="e", micros=42)

    assert main(["--stack", "rtv", "usage", "--format", "json"], session=session) == 0
    assert json.loads(capsys.readouterr().out)[0]["spend_micros"] == 42


def test_missing_credentials_are_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: Any
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    session = boto3.session.Session(region_name="us-east-1")

    assert main(["--table", TABLE, "usage"], session=session) == 2
    assert "no AWS credentials found" in capsys.readouterr().err


def test_a_stale_local_stack_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: Any
) -> None:
    import socket

    import pytest_socket

    import ops.connect

    pytest_socket.enable_socket()  # real loopback: a refused connection, as when moto is down
    with socket.socket() as probe:  # a port nothing listens on: moto is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"urls": {"aws": f"http://127.0.0.1:{port}"}}))
    monkeypatch.setattr(ops.connect, "STATE_FILE", state)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")

    status = main(["--local", "usage"])

    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.startswith("ops: ") and "Could not connect" in err and len(err.splitlines()) == 1


def test_aws_refusing_after_connecting_is_one_clear_line(
    aws: Aws, session: Any, capsys: Any
) -> None:
    spend(aws).charge(call_id=CallId("rtc_1"), user=ANN, event_key="e", micros=1)

    class Refused:  # what botocore's HTTP layer hands back: just the status
        status_code = 400

    def deny(**_: Any) -> tuple[Any, dict[str, Any]]:
        error = {"Code": "AccessDeniedException", "Message": "not allowed to UpdateItem"}
        return Refused(), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}

    # A before-call handler that answers stands in for IAM: moto enforces no policy here.
    session.events.register("before-call.dynamodb.UpdateItem", deny)
    status, out, err = ops(session, "block", ANN, capsys=capsys)

    assert status == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("ops: AWS answered AccessDeniedException")
    assert not ControlReader(TABLE, aws.dynamodb).read(ANN).blocked
