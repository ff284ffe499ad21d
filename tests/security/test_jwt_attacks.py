"""Battery 1: JWT attacks, each through the real handler.

Every case asserts the refusal (401 with a problem document and `WWW-Authenticate: Bearer
error="invalid_token"`), that OpenAI was never called, that no quota was spent, and that no
URL the token names was ever fetched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from devstack.lambda_events import http_event
from tests.support import forge
from tests.support.aws import Aws
from tests.support.env import ORIGIN
from tests.support.handler import Reply, invoke
from tests.support.identity import Issuer, SigningKey, b64url
from tests.support.internet import FakeInternet
from tests.support.jwt_attacks import (
    BROKEN_KEY_SETS,
    CASES,
    Case,
    answer_key_set_with,
    bearer,
    real,
    signed,
)


@pytest.fixture
def strict(make_handler: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    return make_handler(AUTH_TOKEN_USE="access")


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_attack_is_refused_without_cost(
    case: Case, strict: Any, issuer: Issuer, internet: FakeInternet, aws: Aws
) -> None:
    extra = {"origin": ORIGIN, "content-type": "application/json"}
    headers = {k: v for k, v in (case(issuer) | extra).items() if v is not None}

    reply = invoke(
        strict, http_event(headers=headers, body="{}") | {"rawQueryString": "access_token=x"}
    )

    assert_invalid_token(reply)
    assert internet.openai_requests() == []
    assert aws.quota_items() == []
    assert not any("attacker" in str(r.url) for r in internet.requests)


def test_a_token_only_in_the_query_string_is_refused(
    strict: Any, issuer: Issuer, internet: FakeInternet
) -> None:
    event = http_event(headers={"origin": ORIGIN}) | {
        "rawQueryString": f"access_token={real(issuer)}",
        "queryStringParameters": {"access_token": real(issuer)},
    }

    assert_invalid_token(invoke(strict, event))
    assert internet.openai_requests() == []


def assert_invalid_token(reply: Reply) -> None:
    assert reply.status == 401, reply.body
    assert reply.header("content-type") == "application/problem+json"
    assert reply.json["type"].endswith(":invalid-token") and reply.json["status"] == 401
    assert 'error="invalid_token"' in reply.required_header("www-authenticate")
    assert "Traceback" not in reply.body


def test_the_control_case_passes(strict: Any, issuer: Issuer) -> None:
    """The forging helpers make a valid token when nothing is changed: the cases above fail
    for the change they make, not for a broken builder."""
    headers = signed()(issuer) | {"content-type": "application/json"}

    reply = invoke(strict, http_event(headers=headers, body="{}"))

    assert reply.status == 200


# --- the key set under attack -----------------------------------------------------------------


def test_a_flood_of_unknown_kids_costs_at_most_one_refetch(
    mint: Any, issuer: Issuer, internet: FakeInternet
) -> None:
    assert mint().status == 200
    for n in range(100):
        stranger = forge.rs256(
            SigningKey.rsa(f"random-{n}") if n < 3 else issuer.keys[0],
            {"alg": "RS256", "kid": f"random-{n}"},
            forge.claims(),
        )
        assert mint(token=stranger).status == 401
        if n % 20 == 0:
            assert mint(token=issuer.token(f"user-{n}")).status == 200  # valid tokens keep passing

    assert len(internet.issuer_requests()) <= 2  # the first fetch, and one refetch per cooldown


def test_a_rotated_key_works_on_first_use(
    make_handler: Any, issuer: Issuer, internet: FakeInternet
) -> None:
    handler = make_handler()
    invoke(handler, http_event(headers=bearer(issuer.token())))
    new_key = SigningKey.rsa("rotated")
    issuer.keys.insert(0, new_key)

    reply = invoke(handler, http_event(headers=bearer(issuer.token(key=new_key))))

    assert reply.status == 200 and len(internet.issuer_requests()) == 2


def test_jwks_down_with_cached_keys_keeps_verifying(mint: Any, internet: FakeInternet) -> None:
    assert mint().status == 200
    internet.jwks_down = True

    assert mint().status == 200


def test_jwks_down_without_cached_keys_is_503_not_401(
    mint: Any, internet: FakeInternet, aws: Aws
) -> None:
    internet.jwks_down = True

    reply = mint()

    assert reply.status == 503 and int(reply.header("retry-after")) >= 1
    assert reply.header("www-authenticate") is None and aws.quota_items() == []


def test_a_valid_token_without_the_required_scope_is_403(
    make_handler: Any, issuer: Issuer, aws: Aws
) -> None:
    handler = make_handler(AUTH_REQUIRED_SCOPES="realtime:mint")

    reply = invoke(handler, http_event(headers=bearer(issuer.token(scope="openid"))))

    assert reply.status == 403 and 'error="insufficient_scope"' in reply.required_header(
        "www-authenticate"
    )
    assert aws.quota_items() == []


def test_a_failed_refetch_keeps_the_cached_keys(
    mint: Any, issuer: Issuer, internet: FakeInternet
) -> None:
    assert mint().status == 200
    internet.jwks_down = True
    stranger = SigningKey.rsa("new-kid")

    refused = mint(token=forge.rs256(stranger, {"alg": "RS256", "kid": "new-kid"}, forge.claims()))

    assert refused.status in (401, 503) and len(internet.issuer_requests()) == 2  # it tried
    assert mint().status == 200  # and still verifies with what it had


def test_a_key_declared_for_rs256_does_not_verify_ps256(
    make_handler: Any, issuer: Issuer, internet: FakeInternet, aws: Aws
) -> None:
    """Both algorithms are configured, but the key set says this key is for RS256 only
    (RFC 8725 3.1: one key, one algorithm)."""
    handler = make_handler(AUTH_ALGORITHMS="RS256,PS256")
    key = issuer.keys[0]
    assert key.jwk()["alg"] == "RS256"

    reply = invoke(
        handler,
        http_event(
            headers=bearer(forge.ps256(key, {"alg": "PS256", "kid": key.kid}, forge.claims()))
        ),
    )

    assert_invalid_token(reply)
    assert internet.openai_requests() == [] and aws.quota_items() == []
    assert invoke(handler, http_event(headers=bearer(issuer.token()))).status == 200  # control


def test_one_malformed_key_in_the_set_does_not_take_the_others_down(
    mint: Any, issuer: Issuer
) -> None:
    published = issuer.jwks
    odd = [
        {"kty": "RSA", "kid": "odd-modulus", "n": "!!", "e": "AQAB"},
        {"kty": "EC", "kid": "odd-type", "alg": "RS256", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "RSA", "kid": "odd-fields", "n": 5},
    ]
    issuer.jwks = lambda: {"keys": [*odd, *published()["keys"]]}  # type: ignore[method-assign]

    assert mint().status == 200


@pytest.mark.parametrize("respond", BROKEN_KEY_SETS.values(), ids=BROKEN_KEY_SETS.keys())
def test_a_broken_key_set_is_503_never_401_or_500(
    respond: Any, mint: Any, internet: FakeInternet, aws: Aws
) -> None:
    answer_key_set_with(internet, respond)

    reply = mint()

    assert reply.status == 503, reply.body
    assert reply.header("content-type") == "application/problem+json"
    assert reply.json["type"].endswith(":dependency-unavailable")
    assert int(reply.header("retry-after")) >= 1 and reply.header("www-authenticate") is None
    assert internet.openai_requests() == [] and aws.quota_items() == []
    assert not any("attacker" in str(r.url) for r in internet.requests)  # no redirect followed


def test_a_key_published_for_encryption_does_not_verify(
    mint: Any, issuer: Issuer, internet: FakeInternet
) -> None:
    encryption_key = SigningKey.rsa("enc-key")
    issuer.keys.append(encryption_key)
    published = issuer.jwks
    issuer.jwks = lambda: {  # type: ignore[method-assign]
        "keys": [k | {"use": "enc"} if k["kid"] == "enc-key" else k for k in published()["keys"]]
    }

    assert_invalid_token(mint(token=issuer.token(key=encryption_key)))
    assert internet.openai_requests() == []
    assert mint().status == 200  # control: the signing key beside it still verifies


def test_an_all_zero_ecdsa_signature_is_refused(
    make_handler: Any, issuer: Issuer, internet: FakeInternet, aws: Aws
) -> None:
    """The "psychic signature" (r = s = 0) that some ECDSA verifiers once accepted."""
    issuer.keys[:] = [SigningKey.ec("ec-key")]
    handler = make_handler(AUTH_ALGORITHMS="ES256")
    header = {"alg": "ES256", "kid": "ec-key"}

    reply = invoke(
        handler,
        http_event(headers=bearer(forge.unsigned(header, forge.claims(), b64url(bytes(64))))),
    )

    assert_invalid_token(reply)
    assert internet.openai_requests() == [] and aws.quota_items() == []
    assert invoke(handler, http_event(headers=bearer(issuer.token()))).status == 200  # control
