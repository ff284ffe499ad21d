"""The retry guard counts the attempts of the operation it armed, on the thread that armed it:
several guards share one DynamoDB client, and a call's admission reads the spend on another
thread while the quota and the ledger write on this one."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from token_vendor.core.deadline import Deadline
from token_vendor.core.retry_guard import OutOfTime, RetryGuard

from tests.support.aws import RawBody, aws_client


@pytest.fixture
def client() -> Any:
    """A real botocore client whose requests are answered before they leave the process."""
    client = aws_client("http://127.0.0.1:9")
    client.meta.events.register(
        "before-send.dynamodb", lambda request, **_: AWSResponse(request.url, 200, {}, RawBody())
    )
    return client


def get(client: Any) -> None:
    client.get_item(TableName="t", Key={"pk": {"S": "x"}})


def test_a_second_attempt_without_time_for_it_is_stopped(client: Any) -> None:
    guard = RetryGuard(client, "dynamodb", attempt_seconds=3.0)
    with guard.within(Deadline(1.0)):
        get(client)  # the first attempt: the caller checked the time
        with pytest.raises(OutOfTime):
            get(client)  # counts as a retry, and 1 s cannot hold a 3 s attempt


def test_requests_of_other_threads_do_not_count_as_retries(client: Any) -> None:
    guard = RetryGuard(client, "dynamodb", attempt_seconds=3.0)
    other = RetryGuard(client, "dynamodb", attempt_seconds=3.0)  # another adapter's guard
    with guard.within(Deadline(1.0)):
        failures: list[BaseException | None] = []

        def elsewhere() -> None:
            try:
                with other.within(Deadline(10.0)):
                    get(client)
                    get(client)
            except BaseException as exc:  # a thread's exception is otherwise only printed
                failures.append(exc)
            else:
                failures.append(None)

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        get(client)  # still this operation's first attempt
    assert failures == [None]  # the other thread's requests went through


def test_an_unarmed_guard_never_stops_a_request(client: Any) -> None:
    RetryGuard(client, "dynamodb", attempt_seconds=3.0)
    for _ in range(3):
        get(client)


def test_a_control_read_is_not_retried_past_its_deadline() -> None:
    """The watcher's poll of the operator's controls (1 s): a throttled table is tried once,
    not for botocore's three attempts with backoff, which would hold the watcher's loop."""
    from token_vendor.core.controls import ControlReader
    from token_vendor.core.errors import DependencyUnavailable
    from token_vendor.core.ids import UserId

    client = aws_client("http://127.0.0.1:9")
    sent: list[str] = []

    def throttled(request: Any, **_: Any) -> AWSResponse:
        sent.append(request.url)
        body = b'{"__type":"ThrottlingException","message":"slow down"}'
        return AWSResponse(request.url, 400, {}, RawBody(body))

    client.meta.events.register("before-send.dynamodb", throttled)
    reader = ControlReader("t", client)

    with pytest.raises(DependencyUnavailable):
        reader.read(UserId("u"), Deadline(1.0))
    assert len(sent) == 1
