"""A development OpenID Connect issuer: sign in with any user name, get RS256 JWTs.

It speaks the parts of OAuth 2.1 a browser app uses (authorization code + PKCE S256, refresh
tokens with rotation) so the web page runs the same flow it runs against Cognito or Auth0.
There are no passwords and no sessions: every /authorize shows the form. The signing key is
made at start and lives only in memory, so tokens die with the process.

Sign-out follows one of two real contracts. Standard OIDC (the default): discovery names an
`end_session_endpoint` (`/logout?post_logout_redirect_uri=&id_token_hint=`) and a
`revocation_endpoint` (RFC 7009, `/revoke`). `--cognito`: as Amazon Cognito, discovery names
neither; `/logout` wants `client_id` and `logout_uri` (and refuses the standard parameters),
and refresh tokens are revoked at `/oauth2/revoke`. The page must know which it talks to.

`python -m devstack.idp --port 3002 --issuer-url http://127.0.0.1:3002 ...`
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.net import LOOPBACK_HOSTS, serve
from devstack.wire import json_value

DEFAULT_SCOPES = ("openid", "realtime:mint")
# realtime:client_secrets: the shipped client-secret profile's opt-in (its sessions are not
# metered by the watcher); the page asks for it in its client_secrets mode.
SUPPORTED_SCOPES = (
    "openid", "profile", "realtime:mint", "realtime:support", "realtime:client_secrets",
)  # fmt: skip
ACCESS_LIFETIME = 15 * 60
CODE_LIFETIME = 60
REFRESH_LIFETIME = 8 * 3600
MAX_DEV_LIFETIME = 24 * 3600
USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
# The one-time code, refresh token and PKCE verifier alphabets (RFC 7636 section 4.1).
VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


class OAuthError(Exception):
    """An RFC 6749 error: `error` is the code a client reads, `description` is for humans."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass(frozen=True)
class Grant:
    """What a code or refresh token stands for."""

    user: str
    client_id: str
    scope: tuple[str, ...]
    expires: float
    redirect_uri: str = ""
    challenge: str = ""
    nonce: str | None = None


@dataclass
class DevIssuer:
    issuer_url: str
    audience: str
    client_id: str
    redirect_uris: tuple[str, ...]
    allowed_origins: tuple[str, ...] = ()
    access_lifetime: int = ACCESS_LIFETIME
    cognito: bool = False
    clock: Callable[[], float] = time.time
    kid: str = field(default_factory=lambda: secrets.token_urlsafe(8))
    _key: rsa.RSAPrivateKey = field(
        init=False,
        repr=False,
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )
    _codes: dict[str, Grant] = field(init=False, repr=False, default_factory=dict)
    _refresh: dict[str, Grant] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.issuer_url = self.issuer_url.rstrip("/")  # the function compares `iss` exactly
        if not self.allowed_origins:  # the app's pages call /token from their own origin
            self.allowed_origins = tuple(dict.fromkeys(_origin(u) for u in self.redirect_uris))

    # -- documents -------------------------------------------------------------------------
    def discovery(self) -> dict[str, Any]:
        base = self.issuer_url
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "jwks_uri": f"{base}/jwks.json",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": list(SUPPORTED_SCOPES),
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "name", "nonce"],
            "authorization_response_iss_parameter_supported": True,
        } | (
            {}  # Cognito publishes neither: its logout and revocation are its own
            if self.cognito
            else {"end_session_endpoint": f"{base}/logout", "revocation_endpoint": f"{base}/revoke"}
        )

    def revoke(self, form: Mapping[str, str]) -> None:
        """RFC 7009: a refresh token is revoked; an unknown token is not an error."""
        if form.get("client_id") != self.client_id:
            raise OAuthError("invalid_client", "unknown or missing client_id", 401)
        grant = self._refresh.get(form.get("token", ""))
        if grant is not None and grant.client_id == form["client_id"]:
            del self._refresh[form["token"]]

    def logout_target(self, query: Mapping[str, str]) -> str:
        """Where /logout sends the browser back to, by this issuer's contract."""
        if self.cognito:
            # Cognito: client_id and logout_uri, the latter one of the client's sign-out URLs.
            if query.get("client_id") != self.client_id:
                raise OAuthError("invalid_request", "client_id is missing or unknown")
            target = query.get("logout_uri", "")
            if target not in self.redirect_uris:
                raise OAuthError("invalid_request", "logout_uri is missing or not registered")
            return target
        target = query.get("post_logout_redirect_uri", "")
        if target not in self.redirect_uris:
            raise OAuthError(
                "invalid_request", "post_logout_redirect_uri is missing or not registered"
            )
        hint = query.get("id_token_hint")
        if hint:
            try:
                jwt.decode(
                    hint, self._key.public_key(), algorithms=["RS256"], audience=self.client_id,
                    issuer=self.issuer_url, options={"verify_exp": False},
                )  # fmt: skip
            except jwt.PyJWTError:
                raise OAuthError("invalid_request", "id_token_hint is not our ID token") from None
        return target

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        return {"keys": [public | {"kid": self.kid, "use": "sig", "alg": "RS256"}]}

    # -- tokens ----------------------------------------------------------------------------
    def mint_token(
        self, user: str, scopes: Iterable[str] = DEFAULT_SCOPES, lifetime: int | None = None
    ) -> str:
        """An access token as the function expects it (the CLI and tests use this directly)."""
        now = int(self.clock())
        claims = {
            "iss": self.issuer_url,
            "sub": subject_for(user),
            "aud": self.audience,
            "client_id": self.client_id,
            "scope": " ".join(scopes),
            "token_use": "access",
            "username": normalise_user(user),
            "iat": now,
            "exp": now + (self.access_lifetime if lifetime is None else lifetime),
            "jti": secrets.token_urlsafe(16),
        }
        return self._sign(claims)

    def id_token(self, user: str, nonce: str | None) -> str:
        now = int(self.clock())
        claims = {
            "iss": self.issuer_url,
            "sub": subject_for(user),
            "aud": self.client_id,
            "name": normalise_user(user),
            "preferred_username": normalise_user(user),
            "token_use": "id",
            "auth_time": now,
            "iat": now,
            "exp": now + self.access_lifetime,
        }
        if nonce:
            claims["nonce"] = nonce
        return self._sign(claims)

    def _sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(dict(claims), self._key, algorithm="RS256", headers={"kid": self.kid})

    # -- the authorization-code flow -------------------------------------------------------
    def check_client(self, client_id: str, redirect_uri: str) -> None:
        """Errors here are shown on the page, never redirected: the target is not trusted."""
        if client_id != self.client_id:
            raise OAuthError("invalid_client", f"unknown client_id {client_id!r}")
        if redirect_uri not in self.redirect_uris:  # exact match, as OAuth 2.1 requires
            raise OAuthError("invalid_request", f"redirect_uri {redirect_uri!r} is not registered")

    def check_request(self, params: Mapping[str, str]) -> tuple[str, ...]:
        """The parts a client gets back as ?error=... on its redirect_uri. Returns the scope."""
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "response_type must be 'code'")
        if params.get("code_challenge_method") != "S256":
            raise OAuthError("invalid_request", "PKCE with code_challenge_method=S256 is required")
        if not re.fullmatch(r"[A-Za-z0-9_-]{43}", params.get("code_challenge", "")):
            raise OAuthError("invalid_request", "code_challenge must be a base64url SHA-256")
        requested = tuple(params.get("scope", "").split()) or DEFAULT_SCOPES
        unknown = [s for s in requested if s not in SUPPORTED_SCOPES]
        if unknown:
            raise OAuthError("invalid_scope", f"unsupported scope: {' '.join(unknown)}")
        return requested

    def issue_code(self, user: str, params: Mapping[str, str]) -> str:
        self.check_client(params.get("client_id", ""), params.get("redirect_uri", ""))
        scope = self.check_request(params)
        now = self.clock()
        self._codes = {c: g for c, g in self._codes.items() if g.expires >= now}
        code = secrets.token_urlsafe(32)
        self._codes[code] = Grant(
            user=normalise_user(user),
            client_id=params["client_id"],
            scope=scope,
            expires=now + CODE_LIFETIME,
            redirect_uri=params["redirect_uri"],
            challenge=params["code_challenge"],
            nonce=params.get("nonce") or None,
        )
        return code

    def exchange(self, form: Mapping[str, str]) -> dict[str, Any]:
        """The token endpoint: authorization_code (with the PKCE verifier) or refresh_token."""
        if form.get("client_id") != self.client_id:
            raise OAuthError("invalid_client", "unknown or missing client_id", 401)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            grant = self._redeem_code(form)
        elif grant_type == "refresh_token":
            grant = self._redeem_refresh(form)
        else:
            raise OAuthError(
                "unsupported_grant_type", f"grant_type {grant_type!r} is not supported"
            )
        return self._token_response(grant)

    def _redeem_code(self, form: Mapping[str, str]) -> Grant:
        # Popped before any check: a code is spent by its first use, right or wrong.
        grant = self._codes.pop(form.get("code", ""), None)
        if grant is None or grant.expires < self.clock():
            raise OAuthError("invalid_grant", "the code is unknown, used or expired")
        if grant.client_id != form.get("client_id") or grant.redirect_uri != form.get(
            "redirect_uri"
        ):
            raise OAuthError("invalid_grant", "the code was issued to another client or redirect")
        verifier = form.get("code_verifier", "")
        if not VERIFIER.fullmatch(verifier) or not secrets.compare_digest(
            s256(verifier), grant.challenge
        ):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        return grant

    def _redeem_refresh(self, form: Mapping[str, str]) -> Grant:
        # Rotation: the old refresh token is spent, so a stolen copy works at most once.
        grant = self._refresh.pop(form.get("refresh_token", ""), None)
        if grant is None or grant.expires < self.clock() or grant.client_id != form["client_id"]:
            raise OAuthError("invalid_grant", "the refresh token is unknown, used or expired")
        wanted = tuple(form.get("scope", "").split()) or grant.scope
        if not set(wanted) <= set(grant.scope):
            raise OAuthError("invalid_scope", "a refresh cannot widen the scope")
        return Grant(grant.user, grant.client_id, wanted, grant.expires, nonce=None)

    def _token_response(self, grant: Grant) -> dict[str, Any]:
        refresh = secrets.token_urlsafe(32)
        self._refresh[refresh] = Grant(
            grant.user, grant.client_id, grant.scope, self.clock() + REFRESH_LIFETIME
        )
        return {
            "access_token": self.mint_token(grant.user, grant.scope),
            "id_token": self.id_token(grant.user, grant.nonce),
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": self.access_lifetime,
            "scope": " ".join(grant.scope),
        }


def normalise_user(name: str) -> str:
    user = name.strip().lower()
    if not USER_NAME.fullmatch(user):
        raise ValueError("a user name is 1-64 letters, digits or . _ @ - (starting alphanumeric)")
    return user


def subject_for(user: str) -> str:
    """Stable per user name, so quotas and logs follow a developer across restarts."""
    return f"user-{normalise_user(user)}"


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# -- HTTP --------------------------------------------------------------------------------------
ISSUER = web.AppKey("issuer", DevIssuer)
AUTHORIZE_FIELDS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
)


def create_app(
    issuer_url: str,
    audience: str,
    client_id: str,
    redirect_uris: Iterable[str],
    *,
    allowed_origins: Iterable[str] = (),
    access_lifetime: int = ACCESS_LIFETIME,
    dev_endpoint: bool = True,
    cognito: bool = False,
) -> web.Application:
    issuer = DevIssuer(
        issuer_url,
        audience,
        client_id,
        tuple(redirect_uris),
        tuple(allowed_origins),
        access_lifetime,
        cognito,
    )
    app = web.Application(middlewares=[_cors])
    app[ISSUER] = issuer
    app.router.add_get("/.well-known/openid-configuration", _discovery)
    app.router.add_get("/jwks.json", _jwks)
    app.router.add_get("/authorize", _authorize_page)
    app.router.add_post("/authorize", _authorize_submit)
    app.router.add_post("/token", _token)
    app.router.add_get("/logout", _logout)
    app.router.add_post("/oauth2/revoke" if cognito else "/revoke", _revoke)
    if dev_endpoint:
        app.router.add_post("/dev/token", _dev_token)
    return app


# Browsers read discovery, keys and tokens from the app's own origin; the rest is navigation.
CORS_PATHS = frozenset(
    {"/.well-known/openid-configuration", "/jwks.json", "/token", "/revoke", "/oauth2/revoke"}
)


@web.middleware
async def _cors(request: web.Request, handler: Any) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    allowed = (
        request.path in CORS_PATHS
        and origin is not None
        and origin in request.app[ISSUER].allowed_origins
    )
    if request.method == "OPTIONS" and request.path in CORS_PATHS:
        response: web.StreamResponse = web.Response(status=204)
        if allowed:
            response.headers["Access-Control-Allow-Methods"] = "GET, POST"
            response.headers["Access-Control-Allow-Headers"] = "content-type"
            response.headers["Access-Control-Max-Age"] = "600"
    else:
        response = await handler(request)
    if allowed:
        response.headers["Access-Control-Allow-Origin"] = str(origin)
    if request.path in CORS_PATHS:
        response.headers["Vary"] = "Origin"
    return response


async def _discovery(request: web.Request) -> web.Response:
    return web.json_response(request.app[ISSUER].discovery())


async def _jwks(request: web.Request) -> web.Response:
    return web.json_response(request.app[ISSUER].jwks())


async def _authorize_page(request: web.Request) -> web.Response:
    params = {k: request.query.get(k, "") for k in AUTHORIZE_FIELDS}
    return _authorize(request.app[ISSUER], params, user=None)


async def _authorize_submit(request: web.Request) -> web.Response:
    form = await request.post()
    params = {k: str(form.get(k, "")) for k in AUTHORIZE_FIELDS}
    return _authorize(request.app[ISSUER], params, user=str(form.get("username", "")))


def _authorize(issuer: DevIssuer, params: dict[str, str], user: str | None) -> web.Response:
    try:
        issuer.check_client(params["client_id"], params["redirect_uri"])
    except OAuthError as exc:
        return _page(
            "Sign-in request refused", f"<p role='alert'>{html.escape(exc.description)}</p>", 400
        )
    try:
        issuer.check_request(params)
    except OAuthError as exc:
        return _redirect(params, {"error": exc.error, "error_description": exc.description})
    if user is None:
        return _sign_in_form(params)
    try:
        code = issuer.issue_code(user, params)
    except ValueError as exc:
        return _sign_in_form(params, error=str(exc), status=400)
    return _redirect(params, {"code": code, "iss": issuer.issuer_url})


def _redirect(params: Mapping[str, str], answer: dict[str, str]) -> web.Response:
    if params.get("state"):
        answer["state"] = params["state"]
    separator = "&" if "?" in params["redirect_uri"] else "?"
    location = params["redirect_uri"] + separator + urlencode(answer)
    # 303: the browser follows a POSTed form's answer with a GET.
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _sign_in_form(params: Mapping[str, str], error: str = "", status: int = 200) -> web.Response:
    hidden = "".join(
        f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in params.items()
    )
    alert = f'<p role="alert" id="error">{html.escape(error)}</p>' if error else ""
    described = ' aria-describedby="error" aria-invalid="true"' if error else ""
    body = rf"""<p>Development identity provider: type any user name. There is no password.</p>
{alert}<form method="post" action="/authorize">{hidden}
<label for="username">User name</label>
<input id="username" name="username" autocomplete="username" required autofocus
 maxlength="64" pattern="[A-Za-z0-9][A-Za-z0-9._@\-]*" spellcheck="false"{described}>
<button type="submit">Sign in</button></form>"""
    return _page("Sign in (development)", body, status)


def _page(title: str, body: str, status: int = 200) -> web.Response:
    document = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font:1rem/1.5 system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}}
label,input,button{{display:block;font:inherit;margin:.4rem 0}}input{{width:100%;padding:.4rem}}
[role=alert]{{color:#a00000}}</style></head>
<body><main><h1>{title}</h1>{body}</main></body></html>"""
    return web.Response(
        text=document, status=status, content_type="text/html", headers=PAGE_HEADERS
    )


async def _token(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        answer = request.app[ISSUER].exchange({k: str(v) for k, v in form.items()})
    except OAuthError as exc:
        return web.json_response(
            {"error": exc.error, "error_description": exc.description},
            status=exc.status,
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )
    return web.json_response(answer, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def _logout(request: web.Request) -> web.Response:
    # No sessions to end: the contract is what is checked, then the browser goes back.
    try:
        target = request.app[ISSUER].logout_target(request.query)
    except OAuthError as exc:
        return _page("Sign-out refused", f"<p role='alert'>{html.escape(exc.description)}</p>", 400)
    return web.Response(status=303, headers={"Location": target, "Cache-Control": "no-store"})


async def _revoke(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        request.app[ISSUER].revoke({k: str(v) for k, v in form.items()})
    except OAuthError as exc:
        return web.json_response(
            {"error": exc.error, "error_description": exc.description}, status=exc.status
        )
    return web.Response(status=200, headers={"Cache-Control": "no-store"})


async def _dev_token(request: web.Request) -> web.Response:
    """Mints for a user name without the browser flow: `python -m devstack.token`.

    Loopback only, by peer and by Host (a DNS-rebinding page would send its own host name),
    and JSON only, so a cross-site form cannot post here without a preflight it would fail.
    """
    host = (request.host or "").rsplit(":", 1)[0].strip("[]")
    if request.remote not in {"127.0.0.1", "::1"} or host not in LOOPBACK_HOSTS:
        return web.json_response({"error": "access_denied"}, status=403)
    if request.content_type != "application/json":
        return web.json_response({"error": "invalid_request"}, status=415)
    try:
        data = json_value(await request.read())
        lifetime = int(data.get("lifetime") or request.app[ISSUER].access_lifetime)
        if not 1 <= lifetime <= MAX_DEV_LIFETIME:
            raise ValueError(f"lifetime must be 1 to {MAX_DEV_LIFETIME} seconds")
        scopes = data.get("scopes") or DEFAULT_SCOPES
        scopes = scopes.split() if isinstance(scopes, str) else [str(s) for s in scopes]
        token = request.app[ISSUER].mint_token(str(data.get("user", "")), scopes, lifetime)
    except (ValueError, TypeError, AttributeError) as exc:
        return web.json_response(
            {"error": "invalid_request", "error_description": str(exc)}, status=400
        )
    return web.json_response(
        {"access_token": token, "token_type": "Bearer", "expires_in": lifetime},
        headers={"Cache-Control": "no-store"},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3002)
    parser.add_argument("--issuer-url", help="default http://HOST:PORT")
    parser.add_argument("--audience", default="realtime-token-vendor")
    parser.add_argument("--client-id", default="devstack-web")
    parser.add_argument("--redirect-uri", action="append", default=[], required=True)
    parser.add_argument("--allowed-origin", action="append", default=[])
    parser.add_argument("--access-lifetime", type=int, default=ACCESS_LIFETIME)
    parser.add_argument(
        "--cognito", action="store_true", help="Cognito's logout and revocation, not OIDC's"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    app = create_app(
        args.issuer_url or f"http://{args.host}:{args.port}",
        args.audience,
        args.client_id,
        args.redirect_uri,
        allowed_origins=args.allowed_origin,
        access_lifetime=args.access_lifetime,
        cognito=args.cognito,
    )
    serve(app, args.host, args.port, "issuer")


if __name__ == "__main__":
    main()
