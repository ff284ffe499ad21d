"""Listing calls and hanging up have per-user limits of their own (CALL_ROUTE_QUOTAS), each
route counted apart and apart from the mint quota: a refusal is a 429 problem with
Retry-After and the RateLimit headers, like the mint's, and it reaches nothing upstream."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.aws import Aws
from tests.support.handler import (
    Reply,
    assert_problem,
    call_id_of,
    hang_up,
    listing,
    mint_units,
)
from tests.support.identity import Issuer
from tests.support.internet import FakeInternet

# Every test here counts in one minute window of the real clock.
pytestmark = pytest.mark.usefixtures("one_minute")


@pytest.fixture
def limited(make_handler: Any) -> Any:
    return make_handler(CALL_ROUTE_QUOTAS="2/minute,5/day", QUOTAS="20/minute,100/day")


def assert_limited(reply: Reply) -> None:
    problem = assert_problem(reply, 429, "quota-exceeded")
    retry_after = int(reply.required_header("retry-after"))
    assert 1 <= retry_after <= 60 and problem["retry_after"] == retry_after
    assert problem["policy"] == "minute"
    assert reply.required_header("ratelimit-policy") == '"minute";q=2;w=60, "day";q=5;w=86400'
    assert reply.required_header("ratelimit").startswith('"minute";r=0;t=')


def test_the_list_is_limited_per_user_with_the_rate_limit_headers(
    limited: Any, issuer: Issuer
) -> None:
    first, second, third = (listing(limited, issuer) for _ in range(3))

    assert first.status == second.status == 200
    assert first.required_header("ratelimit").startswith('"minute";r=1;t=')
    assert second.required_header("ratelimit").startswith('"minute";r=0;t=')
    assert_limited(third)
    assert listing(limited, issuer, "someone-else").status == 200  # per user


def test_hanging_up_is_counted_apart_from_the_list_and_a_refusal_reaches_nothing(
    limited: Any, place: Any, issuer: Issuer, internet: FakeInternet
) -> None:
    placed = place(with_handler=limited)
    assert placed.status == 201, placed.body
    call_id = call_id_of(placed)
    for _ in range(2):
        listing(limited, issuer)
    assert listing(limited, issuer).status == 429  # the list is used up...

    ended = hang_up(limited, issuer, call_id)  # ...the hangup is not
    assert ended.status == 200 and ended.required_header("ratelimit").startswith('"minute";r=1')
    assert hang_up(limited, issuer, call_id).status == 200  # idempotent, and counted
    upstream = len(internet.openai_requests())

    assert_limited(hang_up(limited, issuer, call_id))
    assert len(internet.openai_requests()) == upstream


def test_neither_route_uses_up_the_mint_quota(limited: Any, issuer: Issuer, aws: Aws) -> None:
    for _ in range(3):
        listing(limited, issuer)
        hang_up(limited, issuer, "rtc_none")
    assert mint_units(aws) == 0
