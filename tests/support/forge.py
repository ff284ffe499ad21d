"""Hand-made tokens: what an attacker sends, built byte by byte where PyJWT refuses to."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from tests.support.identity import AUDIENCE, ISSUER, SigningKey, b64url


def segment(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":")).encode()
    return b64url(raw)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "mallory",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "scope": "openid realtime:client_secrets",
        "token_use": "access",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def unsigned(header: Any, payload: Any, signature: str = "") -> str:
    return f"{segment(header)}.{segment(payload)}.{signature}"


def rs256(key: SigningKey, header: dict[str, Any], payload: Any, hash_: Any = None) -> str:
    signing_input = f"{segment(header)}.{segment(payload)}".encode()
    assert isinstance(key.private, rsa.RSAPrivateKey)
    signature = key.private.sign(signing_input, padding.PKCS1v15(), hash_ or hashes.SHA256())
    return f"{signing_input.decode()}.{b64url(signature)}"


def ps256(key: SigningKey, header: dict[str, Any], payload: Any) -> str:
    signing_input = f"{segment(header)}.{segment(payload)}".encode()
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    signature = key.private.sign(signing_input, pss, hashes.SHA256())
    return f"{signing_input.decode()}.{b64url(signature)}"


def es256(key: SigningKey, header: dict[str, Any], payload: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    signing_input = f"{segment(header)}.{segment(payload)}".encode()
    der = key.private.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input.decode()}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def hs256(secret: bytes, header: dict[str, Any], payload: Any) -> str:
    signing_input = f"{segment(header)}.{segment(payload)}".encode()
    return f"{signing_input.decode()}.{b64url(hmac.new(secret, signing_input, hashlib.sha256).digest())}"


def public_key_encodings(key: SigningKey) -> dict[str, bytes]:
    """The issuer's public key in every form an algorithm-confusion attack tries as HMAC secret."""
    public = key.private.public_key()
    return {
        "pem_spki": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "pem_pkcs1": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ),
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk_json": json.dumps(key.jwk()).encode(),
        "ssh": public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
    }
