"""Sign-out by the issuer's real contract, against the dev issuer in both of its modes:
standard OIDC (end_session_endpoint, revocation_endpoint from discovery) and Amazon
Cognito (/logout?client_id=&logout_uri=, /oauth2/revoke, neither in discovery). Either way
the refresh token is dead afterwards, and the browser went through the issuer's logout."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from devstack.stack import CLIENT_ID, start_stack
from tests.support.browser import TIMEOUT, alert, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.stack]


@pytest.fixture(scope="module")
def cognito_stack() -> Iterator[Any]:
    with start_stack(issuer_style="cognito") as running:
        yield running


def sign_out(page: Any, stack: Any) -> tuple[str, list[str]]:
    """Signs out through the page; returns the refresh token it held and the issuer URLs the
    browser requested while signing out."""
    refresh = page.evaluate("JSON.parse(sessionStorage.getItem('rtv.tokens')).refresh_token")
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for(timeout=TIMEOUT)
    assert page.url == stack.urls["web"] + "/"
    assert page.evaluate("sessionStorage.getItem('rtv.tokens')") is None
    return refresh, [u for u in requested if u.startswith(stack.urls["issuer"])]


def refresh_works(stack: Any, refresh_token: str) -> bool:
    reply = httpx.post(
        stack.urls["issuer"] + "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
        },
    )
    return reply.status_code == 200


def test_oidc_sign_out_ends_the_session_and_revokes_the_refresh_token(
    page: Any, stack: Any
) -> None:
    sign_in(page, stack, "olivia")

    refresh, requested = sign_out(page, stack)

    assert f"{stack.urls['issuer']}/revoke" in requested
    (logout,) = [u for u in requested if urlsplit(u).path == "/logout"]
    query = parse_qs(urlsplit(logout).query)
    assert query["post_logout_redirect_uri"] == [stack.urls["web"] + "/"]
    assert query["client_id"] == [CLIENT_ID] and query["id_token_hint"][0].count(".") == 2
    assert not refresh_works(stack, refresh)


def test_cognito_sign_out_uses_cognitos_logout_and_revokes_the_refresh_token(
    page: Any, cognito_stack: Any
) -> None:
    stack = cognito_stack
    sign_in(page, stack, "connor")

    refresh, requested = sign_out(page, stack)

    assert f"{stack.urls['issuer']}/oauth2/revoke" in requested
    (logout,) = [u for u in requested if urlsplit(u).path == "/logout"]
    assert parse_qs(urlsplit(logout).query) == {
        "client_id": [CLIENT_ID],
        "logout_uri": [stack.urls["web"] + "/"],
    }
    assert not refresh_works(stack, refresh)


def test_the_cognito_issuer_refuses_the_standard_logout_parameters(cognito_stack: Any) -> None:
    """So a page that spoke standard OIDC to Cognito would fail here, as it does at Cognito."""
    reply = httpx.get(
        cognito_stack.urls["issuer"] + "/logout",
        params={"post_logout_redirect_uri": cognito_stack.urls["web"] + "/"},
    )
    discovery = httpx.get(cognito_stack.urls["issuer"] + "/.well-known/openid-configuration").json()

    assert reply.status_code == 400
    assert "end_session_endpoint" not in discovery and "revocation_endpoint" not in discovery


@pytest.mark.parametrize(
    ("code", "sentence"),
    [
        ("access_denied", "Sign-in was cancelled or refused."),
        ("temporarily_unavailable", "The sign-in service is busy right now."),
        ("<img src=x onerror=alert(1)>", "Sign-in did not complete. Please try again."),
        ("server_error", "The sign-in service had a problem."),
    ],
)
def test_an_issuer_error_is_a_fixed_sentence_never_the_raw_code(
    page: Any, stack: Any, code: str, sentence: str
) -> None:
    page.goto(stack.urls["web"] + "/?" + httpx.QueryParams({"error": code, "state": "x"}).__str__())

    message = alert(page)

    assert message.startswith(sentence)
    assert code not in message and code not in page.content().split("<body")[1]
