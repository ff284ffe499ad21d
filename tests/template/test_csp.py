"""The page's deployed CSP, computed from template.yaml for representative deployments, and
checked by CSP3's own source-matching rules (tests/support/csp.py): every URL the page
fetches is allowed, and nothing broader is."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from devstack.cloudfront import Deployment, local_deployment, response_headers
from tests.support.csp import allows, directive, effective_sources

PAGE = "https://d111abcdef8.cloudfront.net"


@dataclass(frozen=True)
class Case:
    name: str
    deployment: Deployment
    discovery: str  # the issuer's OpenID configuration
    token_endpoint: str
    revocation_endpoint: str
    openai_base: str
    refused: tuple[str, ...] = field(default=())


def webrtc_url(openai_base: str) -> str:
    """Where the page posts its SDP offer: the function's own `webrtc_url`."""
    from token_vendor.api.settings import ApiSettings

    env = {
        "OPENAI_SECRET_ID": "s",
        "QUOTA_TABLE": "t",
        "AUTH_ISSUER": "https://issuer.example.com",
        "AUTH_AUDIENCE": "a",
        "OPENAI_BASE_URL": openai_base,
    }
    return ApiSettings.from_env(env).webrtc_url


COGNITO = "https://rtv-0f1e2d3c.auth.eu-west-1.amazoncognito.com"
CASES = [
    Case(
        "openai-cognito",
        Deployment(
            resources={"UserPoolDomain": "rtv-0f1e2d3c", "UserPool": "eu-west-1_AbCdEf"},
            region="eu-west-1",
        ),
        "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf/.well-known/openid-configuration",
        f"{COGNITO}/oauth2/token",
        f"{COGNITO}/oauth2/revoke",
        "https://api.openai.com/v1",
        refused=(
            "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/realtime/client_secrets",
            "https://other.auth.eu-west-1.amazoncognito.com/oauth2/token",
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_X/.well-known/openid-configuration",
        ),
    ),
    Case(
        "azure-auth0",
        Deployment(
            parameters={
                "OpenAIBaseUrl": "https://contoso.openai.azure.com/openai/v1",
                "AuthIssuer": "https://contoso.eu.auth0.com/",
                "AuthAudience": "https://api.contoso.example",
            }
        ),
        "https://contoso.eu.auth0.com/.well-known/openid-configuration",
        "https://contoso.eu.auth0.com/oauth/token",
        "https://contoso.eu.auth0.com/oauth/revoke",
        "https://contoso.openai.azure.com/openai/v1",
        refused=(
            "https://fabrikam.openai.azure.com/openai/v1/realtime/calls",
            "https://contoso.openai.azure.com/openai/deployments/x/chat/completions",
            "https://api.openai.com/v1/realtime/calls",
            "https://other.eu.auth0.com/oauth/token",
        ),
    ),
    Case(
        "openai-okta-with-path",
        Deployment(parameters={"AuthIssuer": "https://dev-123.okta.com/oauth2/default"}),
        "https://dev-123.okta.com/oauth2/default/.well-known/openid-configuration",
        "https://dev-123.okta.com/oauth2/default/v1/token",
        "https://dev-123.okta.com/oauth2/default/v1/revoke",
        "https://api.openai.com/v1",
        refused=("https://dev-124.okta.com/oauth2/default/v1/token", "https://okta.com/"),
    ),
    Case(
        "openai-google-endpoints-elsewhere",
        Deployment(
            parameters={
                "AuthIssuer": "https://accounts.google.com",
                "AuthEndpointOrigins": "https://oauth2.googleapis.com",
            }
        ),
        "https://accounts.google.com/.well-known/openid-configuration",
        "https://oauth2.googleapis.com/token",
        "https://oauth2.googleapis.com/revoke",
        "https://api.openai.com/v1",
        refused=("https://www.googleapis.com/drive/v3/files",),
    ),
]
# Refused in every deployment: other hosts, other paths of the Realtime API's host, plain
# http, and the regional API Gateway wildcard the page no longer needs.
ALWAYS_REFUSED = (
    "https://evil.example/",
    "https://api.openai.com/v2/realtime/calls",
    "https://api.openai.com/dashboard",
    "http://api.openai.com/v1/realtime/calls",
    "https://d999.cloudfront.net/v1/realtime/client_secrets",
    "http://d111abcdef8.cloudfront.net:8080/",
)


def page_fetches(case: Case) -> list[str]:
    """Every URL web/js fetches: config, the API (same origin), the issuer, the Realtime API."""
    return [
        f"{PAGE}/config.json",
        f"{PAGE}/v1/realtime/client_secrets",
        case.discovery,
        case.token_endpoint,
        case.revocation_endpoint,
        webrtc_url(case.openai_base),
    ]


def csp(deployment: Deployment) -> str:
    return response_headers(deployment)["Content-Security-Policy"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_url_the_page_fetches_is_allowed(case: Case) -> None:
    sources = effective_sources(csp(case.deployment), "connect-src")

    blocked = [url for url in page_fetches(case) if not allows(sources, url, PAGE)]

    assert blocked == [], f"connect-src {sources} blocks {blocked}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_nothing_broader_is_allowed(case: Case) -> None:
    sources = effective_sources(csp(case.deployment), "connect-src")

    allowed = [u for u in ALWAYS_REFUSED + case.refused if allows(sources, u, PAGE)]

    assert allowed == [], f"connect-src {sources} allows {allowed}"
    for source in sources:
        # Exact https hosts or 'self': no wildcard, no bare scheme, no plain http.
        assert source == "'self'" or (source.startswith("https://") and "*" not in source)
        # And each one is needed by something the page fetches.
        assert any(allows([source], u, PAGE) for u in page_fetches(case)), f"unused: {source}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_rest_of_the_policy_allows_only_the_pages_own_files(case: Case) -> None:
    policy = csp(case.deployment)

    assert directive(policy, "default-src") == ["'self'"]
    assert directive(policy, "script-src") == ["'self'"]  # no inline, no eval
    assert directive(policy, "object-src") == ["'none'"]
    assert directive(policy, "base-uri") == ["'none'"]
    assert directive(policy, "frame-ancestors") == ["'none'"]
    assert not allows(effective_sources(policy, "script-src"), "https://cdn.example/x.js", PAGE)


def test_the_other_security_headers_are_those_cloudfront_writes() -> None:
    headers = response_headers(CASES[0].deployment)

    assert headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert headers["Permissions-Policy"] == "microphone=(self), camera=(), geolocation=()"


def test_the_local_stack_gets_the_same_policy_for_its_own_urls() -> None:
    page, issuer, openai = (
        "http://localhost:5173",
        "http://127.0.0.1:3002",
        "http://127.0.0.1:3003/v1",
    )
    sources = effective_sources(csp(local_deployment(issuer, openai)), "connect-src")

    assert allows(sources, f"{page}/v1/realtime/client_secrets", page)
    assert allows(sources, f"{issuer}/.well-known/openid-configuration", page)
    assert allows(sources, f"{issuer}/token", page)
    assert allows(sources, webrtc_url(openai), page)
    # the API's own port is another origin: the page must reach it through its own
    assert not allows(sources, "http://127.0.0.1:3001/v1/realtime/client_secrets", page)
    assert not allows(sources, "http://127.0.0.1:3004/", page)  # moto


# --- the matcher itself, on the spec's own examples ------------------------------------------


@pytest.mark.parametrize(
    ("expression", "url", "expected"),
    [
        ("https://example.com/path/", "https://example.com/path/to/file.js", True),
        ("https://example.com/path", "https://example.com/path/to/file.js", False),
        ("https://example.com/path/file.js", "https://example.com/path/file.js", True),
        ("https://example.com/path/", "https://example.com/pathological", False),
        ("https://example.com", "https://example.com:443/a", True),
        ("https://example.com", "https://example.com:8443/a", False),
        ("example.com", "https://example.com/", True),  # the page's scheme, upgraded
        ("http://example.com", "https://example.com/", True),
        ("https://example.com", "http://example.com/", False),
        ("*.example.com", "https://a.example.com/", True),
        ("*.example.com", "https://example.com/", False),
        ("https:", "https://anything.example/", True),
        ("'self'", PAGE + "/x", True),
        ("'self'", "https://other.cloudfront.net/x", False),
        ("'none'", PAGE + "/x", False),
    ],
)
def test_the_matcher_follows_csp3(expression: str, url: str, expected: bool) -> None:
    assert allows([expression], url, PAGE) is expected
