"""The local page is served as CloudFront serves the deployed one: the template's security
headers computed for the local URLs, and the API under the page's own origin."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devstack.cloudfront import local_deployment, response_headers
from tests.support.browser import sign_in, wait_state
from tests.support.env import SECRETS_SCOPES

pytestmark = [pytest.mark.browser, pytest.mark.stack]


def expected_headers(stack: Any) -> dict[str, str]:
    return response_headers(local_deployment(stack.urls["issuer"], stack.urls["openai"]))


@pytest.mark.parametrize(
    "path", ["/", "/js/main.js", "/config.json", "/no-such-file", "/openapi.json"]
)
def test_every_answer_carries_the_templates_headers_for_the_local_urls(
    stack: Any, path: str
) -> None:
    reply = httpx.get(stack.urls["web"] + path)

    for name, value in expected_headers(stack).items():
        assert reply.headers.get(name) == value, name
    assert "'self'" in reply.headers["content-security-policy"]


def test_the_api_answers_under_the_pages_origin_with_every_viewer_header(stack: Any) -> None:
    token = stack.token("hdr-user", SECRETS_SCOPES)

    reply = httpx.post(
        stack.urls["web"] + "/v1/realtime/client_secrets",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        json={},
    )

    assert reply.status_code == 200, reply.text
    assert reply.json()["value"].startswith("ek_")
    assert reply.headers["ratelimit"]  # the API's own headers come back
    assert (
        reply.headers["content-security-policy"]
        == expected_headers(stack)["Content-Security-Policy"]
    )
    unauthorised = httpx.post(stack.urls["web"] + "/v1/realtime/client_secrets")
    assert unauthorised.status_code == 401 and "www-authenticate" in unauthorised.headers


def test_the_browser_enforces_the_policy_and_the_page_needs_no_preflight(
    page: Any, stack: Any, csp_refusals: list[str]
) -> None:
    methods: list[tuple[str, str]] = []
    page.on("request", lambda r: methods.append((r.method, r.url)))
    sign_in(page, stack, "csp-user")

    page.get_by_role("button", name="Start talking").click()
    wait_state(page, "connected")

    # The mint went to the page's own origin, without a CORS preflight.
    mints = [(m, u) for m, u in methods if u.endswith("/v1/realtime/client_secrets")]
    assert mints == [("POST", stack.urls["web"] + "/v1/realtime/client_secrets")]
    assert not [u for m, u in methods if m == "OPTIONS"]
    # And the CSP is really in force: the API's own port, another origin, is refused.
    outcome = page.evaluate(
        f"fetch('{stack.urls['api']}/openapi.json').then(() => 'fetched', () => 'refused')"
    )
    assert outcome == "refused"
    page.wait_for_timeout(100)  # the console message may trail the rejected promise
    provoked = [m for m in csp_refusals if stack.urls["api"] in m]
    assert provoked, csp_refusals
    for message in provoked:
        csp_refusals.remove(message)
    page.get_by_role("button", name="Hang up").click()
