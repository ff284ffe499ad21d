"""The OpenAI adapter: what it sends, what it accepts back, and how it fails."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from token_vendor.api.realtime import RealtimeApi
from token_vendor.core.deadline import Deadline
from token_vendor.core.errors import (
    DependencyUnavailable,
    UpstreamBadResponse,
    UpstreamRejected,
    UpstreamTimeout,
)
from token_vendor.core.openai_key import OpenAICredentials

from tests.support.faults import good
from tests.support.identity import Issuer
from tests.support.internet import (
    OPENAI_BASE,
    OPENAI_KEY,
    FakeInternet,
    openai_error,
    openai_secret_response,
)

BODY = {
    "expires_after": {"anchor": "created_at", "seconds": 60},
    "session": {"type": "realtime", "model": "gpt-realtime-2.1", "instructions": "Be brief."},
}


class Keys:
    """The key store's interface, counting reads and re-reads."""

    def __init__(self, *values: str) -> None:
        self.values = list(values) or [OPENAI_KEY]
        self.refreshes = 0

    def get(self) -> OpenAICredentials:
        return OpenAICredentials(
            self.values[min(self.refreshes, len(self.values) - 1)], "org-1", "proj-1"
        )

    def refresh(self) -> OpenAICredentials:
        self.refreshes += 1
        return self.get()


@pytest.fixture
def internet() -> FakeInternet:
    return FakeInternet(Issuer())


def api(
    internet: FakeInternet, keys: Keys | None = None, sleeps: list[float] | None = None
) -> RealtimeApi:
    return RealtimeApi(
        OPENAI_BASE,
        internet.client(),
        keys or Keys(),
        sleep=(sleeps if sleeps is not None else []).append,
        jitter=lambda: 0.5,
    )


def mint(internet: FakeInternet, keys: Keys | None = None, seconds: float = 9) -> Any:
    return api(internet, keys).create_client_secret(BODY, "hash-of-user", Deadline(seconds))


def test_the_mint_sends_the_key_the_safety_identifier_and_never_the_beta_header(
    internet: FakeInternet,
) -> None:
    secret = mint(internet)

    sent = internet.openai_requests()[0]
    assert secret.value.startswith("ek_") and secret.upstream.attempts == 1
    assert sent.url == f"{OPENAI_BASE}/realtime/client_secrets"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent.headers["openai-safety-identifier"] == "hash-of-user"
    assert (
        sent.headers["openai-organization"] == "org-1"
        and sent.headers["openai-project"] == "proj-1"
    )
    assert "openai-beta" not in sent.headers
    assert json.loads(sent.content) == BODY


def reply_with(status: int, **kwargs: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, **kwargs)


def test_a_401_re_reads_the_key_once_and_retries(internet: FakeInternet) -> None:
    keys = Keys("sk-old", OPENAI_KEY)

    secret = mint(internet, keys)

    assert keys.refreshes == 1 and secret.upstream.attempts == 2
    assert [r.headers["authorization"] for r in internet.openai_requests()] == [
        "Bearer sk-old",
        f"Bearer {OPENAI_KEY}",
    ]


def test_a_401_after_the_re_read_is_rejected(internet: FakeInternet) -> None:
    keys = Keys("sk-bad")

    with pytest.raises(UpstreamRejected) as caught:
        mint(internet, keys)

    assert caught.value.status == 401 and len(internet.openai_requests()) == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 409])
def test_a_server_fault_is_retried_once(internet: FakeInternet, status: int) -> None:
    internet.openai_script = [lambda r: openai_error(status, None, "boom"), good]

    assert mint(internet).upstream.attempts == 2


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_fault_that_persists_is_unavailable_after_one_retry(
    internet: FakeInternet, status: int
) -> None:
    internet.openai_script = [
        lambda r: openai_error(status, "rate_limit_exceeded", "x", {"retry-after": "7"})
    ] * 3

    with pytest.raises(DependencyUnavailable) as caught:
        mint(internet)

    assert len(internet.openai_requests()) == 2
    assert caught.value.retry_after == 7


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_a_refusal_is_not_retried(internet: FakeInternet, status: int) -> None:
    internet.openai_script = [
        lambda r: openai_error(status, "unknown_parameter", "Unknown parameter")
    ]

    with pytest.raises(UpstreamRejected) as caught:
        mint(internet)

    assert len(internet.openai_requests()) == 1 and "req_err" in caught.value.reason


def test_no_retry_when_the_deadline_does_not_allow_it(internet: FakeInternet) -> None:
    internet.openai_script = [lambda r: openai_error(503, None, "x")] * 2

    with pytest.raises(DependencyUnavailable):
        mint(internet, seconds=2.0)

    assert len(internet.openai_requests()) == 1


def test_no_attempt_without_time_for_it(internet: FakeInternet) -> None:
    with pytest.raises(UpstreamTimeout):
        mint(internet, seconds=0.5)

    assert internet.openai_requests() == []


def raise_(exc: type[Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def respond(request: httpx.Request) -> httpx.Response:
        raise exc("simulated", request=request)  # type: ignore[call-arg]

    return respond


def test_a_read_timeout_is_a_gateway_timeout_and_not_retried(internet: FakeInternet) -> None:
    internet.openai_script = [raise_(httpx.ReadTimeout), good]

    with pytest.raises(UpstreamTimeout):
        mint(internet)

    assert len(internet.openai_requests()) == 1  # the first may have minted: never mint twice


def test_a_connect_timeout_is_retried_once(internet: FakeInternet) -> None:
    internet.openai_script = [raise_(httpx.ConnectTimeout), good]

    assert mint(internet).upstream.attempts == 2


def test_a_connection_error_that_persists_is_unavailable(internet: FakeInternet) -> None:
    internet.openai_script = [raise_(httpx.ConnectError)] * 2

    with pytest.raises(DependencyUnavailable):
        mint(internet)


def changed(**fields: Any) -> Callable[[httpx.Request], httpx.Response]:
    def respond(request: httpx.Request) -> httpx.Response:
        body = openai_secret_response(json.loads(request.content))
        for name, value in fields.items():
            target = body["session"] if name.startswith("session_") else body
            key = name.removeprefix("session_")
            if value is ...:
                target.pop(key)
            else:
                target[key] = value
        return httpx.Response(200, json=body)

    return respond


@pytest.mark.parametrize(
    "respond",
    [
        changed(value=...),
        changed(value="sk-not-a-client-secret"),
        changed(value=12),
        changed(value="ek_short"),
        changed(value="ek_" + "a" * 40 + "\n"),
        changed(expires_at=...),
        changed(expires_at=1),
        changed(expires_at="1999999999"),
        changed(expires_at=4_000_000_000),
        changed(expires_at=True),
        changed(session=...),
        changed(session_id=...),
        changed(session_type=...),
        changed(session_model="gpt-realtime-mini"),
        reply_with(200, content=b"not json"),
        reply_with(200, content=b"[1,2]"),
        reply_with(200, content=b"{" * 100_000),
        reply_with(200, content=b'{"value":"' + b"x" * 70_000 + b'"}'),
    ],
)
def test_a_malformed_success_is_never_passed_on(internet: FakeInternet, respond: Any) -> None:
    internet.openai_script = [respond]

    with pytest.raises(UpstreamBadResponse):
        mint(internet)
