"""JWT verification and the key set's cache. The attack battery lives in tests/security."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from token_vendor.api.auth import JwtVerifier, bearer_token
from token_vendor.api.jwks import JwksKeySource
from token_vendor.core.deadline import Deadline
from token_vendor.core.errors import DependencyUnavailable, InsufficientScope, InvalidToken

from tests.support.clock import Clock
from tests.support.identity import AUDIENCE, ISSUER, JWKS_URL, Issuer, SigningKey
from tests.support.internet import FakeInternet


def verifier(internet: FakeInternet, clock: Clock | None = None, **options: Any) -> JwtVerifier:
    keys = JwksKeySource(
        http=internet.client(),
        issuer=ISSUER,
        algorithms=("RS256",),
        jwks_url=options.pop("jwks_url", JWKS_URL),
        clock=clock or Clock(),
    )
    return JwtVerifier(
        issuer=ISSUER, audiences=(AUDIENCE,), algorithms=("RS256",), keys=keys, **options
    )


@pytest.fixture
def internet() -> FakeInternet:
    return FakeInternet(Issuer())


def deadline() -> Deadline:
    return Deadline(5)


def test_a_valid_token_names_the_caller(internet: FakeInternet) -> None:
    caller = verifier(internet).verify(internet.issuer.token("alice"), deadline())

    assert (caller.issuer, caller.subject) == (ISSUER, "alice")
    assert "realtime:mint" in caller.scopes and len(caller.user_hash) == 32


def test_the_same_subject_at_two_issuers_is_two_users(internet: FakeInternet) -> None:
    alice = verifier(internet).verify(internet.issuer.token("alice"), deadline())

    assert (
        alice.user_hash != type(alice)("https://other.test/", "alice", frozenset(), None).user_hash
    )


@pytest.mark.parametrize(
    "header", ["Bearer", "Basic abc", "Bearer a b", "Bearer a, Bearer b", "", "   ", None]
)
def test_the_authorization_header_must_carry_exactly_one_bearer_token(header: str | None) -> None:
    with pytest.raises(InvalidToken):
        bearer_token(header)


def test_the_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token("bearer abc.def.ghi") == "abc.def.ghi"


def test_cognito_access_tokens_are_matched_on_client_id(internet: FakeInternet) -> None:
    token = internet.issuer.token(aud=..., client_id=AUDIENCE, token_use="access")

    caller = verifier(internet, token_use="access").verify(token, deadline())

    assert caller.subject == "user-1"


def test_a_cognito_id_token_is_refused_where_an_access_token_is_required(
    internet: FakeInternet,
) -> None:
    with pytest.raises(InvalidToken) as caught:
        verifier(internet, token_use="access").verify(
            internet.issuer.token(token_use="id"), deadline()
        )

    assert caught.value.reason == "wrong_token_use"


def test_a_missing_scope_is_403_not_401(internet: FakeInternet) -> None:
    with pytest.raises(InsufficientScope) as caught:
        verifier(internet, required_scopes=("realtime:admin",)).verify(
            internet.issuer.token(), deadline()
        )

    assert caught.value.scopes == ("realtime:admin",)


def test_scp_lists_count_as_scopes(internet: FakeInternet) -> None:
    token = internet.issuer.token(scope=..., scp=["realtime:mint"])

    assert verifier(internet, required_scopes=("realtime:mint",)).verify(token, deadline())


def test_keys_are_fetched_once_and_cached(internet: FakeInternet) -> None:
    v = verifier(internet)

    for _ in range(5):
        v.verify(internet.issuer.token(), deadline())

    assert len(internet.issuer_requests()) == 1


def test_the_key_set_is_found_through_discovery_when_no_url_is_configured(
    internet: FakeInternet,
) -> None:
    v = verifier(internet, jwks_url=None)

    v.verify(internet.issuer.token(), deadline())

    assert [r.url.path for r in internet.issuer_requests()] == [
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
    ]


def test_a_rotated_key_is_picked_up_on_first_use(internet: FakeInternet) -> None:
    clock = Clock()
    v = verifier(internet, clock)
    v.verify(internet.issuer.token(), deadline())
    new_key = SigningKey.rsa()
    internet.issuer.keys.append(new_key)  # published right after our fetch

    caller = v.verify(internet.issuer.token(key=new_key), deadline())

    assert caller.kid == new_key.kid and len(internet.issuer_requests()) == 2


def test_unknown_kids_cost_one_fetch_per_cooldown(internet: FakeInternet) -> None:
    clock = Clock()
    v = verifier(internet, clock)
    stranger = SigningKey.rsa()

    for _ in range(50):
        with pytest.raises(InvalidToken):
            v.verify(internet.issuer.token(key=stranger), deadline())
        v.verify(internet.issuer.token(), deadline())  # valid tokens keep passing

    assert len(internet.issuer_requests()) == 2  # the first fetch, then one refetch per cooldown


def test_after_the_cooldown_an_unknown_kid_may_refetch_again(internet: FakeInternet) -> None:
    clock = Clock()
    v = verifier(internet, clock)
    for _ in range(3):
        with pytest.raises(InvalidToken):
            v.verify(internet.issuer.token(key=SigningKey.rsa()), deadline())
        clock.now += 10

    assert len(internet.issuer_requests()) == 4


def test_with_no_keys_and_the_issuer_down_the_answer_is_unavailable(internet: FakeInternet) -> None:
    internet.jwks_down = True

    with pytest.raises(DependencyUnavailable) as caught:
        verifier(internet).verify(internet.issuer.token(), deadline())

    assert caught.value.retry_after >= 1


def test_cached_keys_outlive_a_failed_refresh(internet: FakeInternet) -> None:
    clock = Clock()
    v = verifier(internet, clock)
    v.verify(internet.issuer.token(), deadline())
    internet.jwks_down = True
    clock.now += 3600  # the cache is stale; the refresh fails

    assert v.verify(internet.issuer.token(), deadline()).subject == "user-1"


def test_a_redirecting_key_set_is_not_followed(internet: FakeInternet) -> None:
    def redirect(request: httpx.Request) -> httpx.Response:
        internet.requests.append(request)
        return httpx.Response(302, headers={"location": "https://evil.test/jwks.json"})

    internet_client = httpx.Client(transport=httpx.MockTransport(redirect))
    keys = JwksKeySource(
        http=internet_client, issuer=ISSUER, algorithms=("RS256",), jwks_url=JWKS_URL
    )

    with pytest.raises(DependencyUnavailable):
        keys.key_for("k", "RS256", deadline())

    assert [str(r.url) for r in internet.requests] == [JWKS_URL]


@pytest.mark.parametrize(
    "jwks_uri",
    ["http://[::1", "https://[bad", 123, None, "ftp://issuer.test/keys", "http://elsewhere.test/k"],
)
def test_a_discovery_document_without_a_usable_key_set_url_is_unavailable_not_a_crash(
    jwks_uri: object,
) -> None:
    def issuer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": jwks_uri})

    keys = JwksKeySource(
        http=httpx.Client(transport=httpx.MockTransport(issuer)),
        issuer=ISSUER,
        algorithms=("RS256",),
    )

    with pytest.raises(DependencyUnavailable):
        keys.key_for("kid", "RS256", deadline())


# --- the clock-skew boundary: the default leeway (30 s), pinned on both sides ---------------

NOW = 1_800_000_000
LEEWAY = 30  # ApiSettings' default AUTH_LEEWAY_SECONDS


def at_time(internet: FakeInternet, **claims: Any) -> JwtVerifier:
    """The verifier as the function builds it (default leeway), its clock at NOW."""
    from token_vendor.api.settings import ApiSettings

    from tests.support.env import BASE_ENV

    leeway = ApiSettings.from_env(BASE_ENV).auth_leeway_seconds
    assert leeway == LEEWAY
    keys = JwksKeySource(
        http=internet.client(), issuer=ISSUER, algorithms=("RS256",), jwks_url=JWKS_URL
    )
    return JwtVerifier(
        issuer=ISSUER, audiences=(AUDIENCE,), algorithms=("RS256",), keys=keys,
        leeway=leeway, clock=Clock(NOW),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        # expired LEEWAY seconds ago: still accepted; one second more: refused
        ({"exp": NOW - LEEWAY, "iat": NOW - 600}, None),
        ({"exp": NOW - LEEWAY - 1, "iat": NOW - 600}, "expired"),
        # not valid for LEEWAY more seconds: accepted; one second more: refused
        ({"nbf": NOW + LEEWAY, "iat": NOW, "exp": NOW + 600}, None),
        ({"nbf": NOW + LEEWAY + 1, "iat": NOW, "exp": NOW + 600}, "not_yet_valid"),
        # issued LEEWAY seconds in the future: accepted; one second more: refused
        ({"iat": NOW + LEEWAY, "exp": NOW + 600}, None),
        ({"iat": NOW + LEEWAY + 1, "exp": NOW + 600}, "issued_in_future"),
    ],
    ids=["exp-edge", "exp-past", "nbf-edge", "nbf-past", "iat-edge", "iat-past"],
)
def test_each_time_claim_allows_exactly_the_leeway(
    internet: FakeInternet, claims: dict[str, Any], reason: str | None
) -> None:
    """A tenfold (or any wider) leeway fails the *-past cases; a narrower one the *-edge."""
    token = internet.issuer.token("alice", **claims)

    if reason is None:
        assert at_time(internet).verify(token, deadline()).subject == "alice"
    else:
        with pytest.raises(InvalidToken) as caught:
            at_time(internet).verify(token, deadline())
        assert caught.value.reason == reason


# --- scopes: space-delimited only (RFC 6749 3.3) --------------------------------------------


@pytest.mark.parametrize("separator", ["\t", "\n", "\u00a0", "\u2003", "\u3000", "\x1f"])
def test_scopes_are_split_on_spaces_only(internet: FakeInternet, separator: str) -> None:
    token = internet.issuer.token("alice", scope=f"openid{separator}realtime:support  openid")

    caller = verifier(internet).verify(token, deadline())

    assert caller.scopes == {f"openid{separator}realtime:support", "openid"}


# --- typ: an ID token cannot pass for an access token when at+jwt is required ---------------


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt"])
def test_a_required_typ_accepts_the_access_token_type(internet: FakeInternet, typ: str) -> None:
    token = internet.issuer.token("alice", headers={"typ": typ})

    assert verifier(internet, required_typ="at+jwt").verify(token, deadline()).subject == "alice"


@pytest.mark.parametrize("typ", ["JWT", ..., "at+jwt-not", "id+jwt"])
def test_a_required_typ_refuses_anything_else(internet: FakeInternet, typ: Any) -> None:
    token = internet.issuer.token("alice", headers={"typ": typ})

    with pytest.raises(InvalidToken) as caught:
        verifier(internet, required_typ="at+jwt").verify(token, deadline())
    assert caught.value.reason == "wrong_typ"


def test_without_a_required_typ_any_typ_is_accepted(internet: FakeInternet) -> None:
    token = internet.issuer.token("alice", headers={"typ": "JWT"})

    assert verifier(internet).verify(token, deadline()).subject == "alice"
