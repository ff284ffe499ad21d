"""OpenAI's own SDKs as the API's clients, in a real browser. An app on an origin of its own
(tests/e2e/sdk/, bundled with the pinned SDKs) mints a client secret from our API with the
`openai` package and opens the call with the Agents SDK; has the Agents SDK place a
server-owned call through our API with the user's token; places a GPT-Live session with the
`openai` package; learns why the server ended a call. Its CSP (production's, plus the API's
origin) is never broken, not even by a refusal the console does not show."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import SCOPES, SECRETS_SCOPE, Stack, start_stack
from tests.support.browser import live_calls, settle, wait_until
from tests.support.env import ROOT
from tests.support.sdk_page import api_url, build, missing, reserve_origin, serve_page
from tests.support.stack import emulator_state

pytestmark = [pytest.mark.browser, pytest.mark.stack]
QUOTAS = "20/minute,200/day"
SHORT_CALL_S = 5
SECRET_SCOPES = f"{SCOPES} {SECRETS_SCOPE}"
SHIPPED_PROFILES = ROOT / "functions" / "token_vendor" / "api" / "profiles.json"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)  # in CI a missing SDK is a failure, never a skip
        pytest.skip(reason)
    return build(tmp_path_factory.mktemp("sdk-page"))


@pytest.fixture(scope="module")
def origin() -> str:
    return reserve_origin()


@pytest.fixture(scope="module")
def stack(origin: str) -> Iterator[Stack]:
    # The app's origin is the one the API allows (AllowedOrigins): every request it makes to
    # the API is cross-origin, preflighted with the SDKs' own headers.
    with start_stack(quotas=QUOTAS, extra_env={"ALLOWED_ORIGINS": origin}) as running:
        yield running


@pytest.fixture(scope="module")
def site(built: Path, stack: Stack, origin: str) -> Iterator[str]:
    with serve_page(built, stack, origin) as url:
        yield url


@pytest.fixture(scope="module")
def short_origin() -> str:
    return reserve_origin()


@pytest.fixture(scope="module")
def short_stack(short_origin: str) -> Iterator[Stack]:
    with start_stack(
        quotas=QUOTAS,
        extra_env={"ALLOWED_ORIGINS": short_origin},
        max_call_seconds=SHORT_CALL_S,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def short_site(built: Path, short_stack: Stack, short_origin: str) -> Iterator[str]:
    with serve_page(built, short_stack, short_origin) as url:
        yield url


@pytest.fixture(scope="module")
def policy_origin() -> str:
    return reserve_origin()


@pytest.fixture(scope="module")
def policy_stack(policy_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The shipped profiles, the default one ending a call that leaves it."""
    profiles = json.loads(SHIPPED_PROFILES.read_text())
    profiles["profiles"]["assistant"]["on_session_change"] = "hangup"
    path = tmp_path_factory.mktemp("profiles") / "profiles.json"
    path.write_text(json.dumps(profiles))
    env = {"ALLOWED_ORIGINS": policy_origin, "PROFILES_FILE": str(path)}
    with start_stack(quotas=QUOTAS, extra_env=env) as running:
        yield running


@pytest.fixture(scope="module")
def policy_site(built: Path, policy_stack: Stack, policy_origin: str) -> Iterator[str]:
    with serve_page(built, policy_stack, policy_origin) as url:
        yield url


def open_app(new_context: Callable[..., Any], url: str) -> Any:
    page = new_context(permissions=["microphone"]).new_page()
    page.goto(url + "/")
    wait_until(page, "window.sdkApp !== undefined")
    return page


def seen(page: Any, kind: str) -> list[dict[str, Any]]:
    return [e for e in page.evaluate("window.sdkApp.seen") if e["kind"] == kind]


def test_the_agents_sdk_opens_a_call_with_a_secret_the_openai_package_minted_here(
    new_context: Callable[..., Any], stack: Stack, site: str
) -> None:
    page = open_app(new_context, site)
    token = stack.token("sdk-secrets", scopes=SECRET_SCOPES)

    call_id = page.evaluate(
        "([api, token]) => window.sdkApp.clientSecrets({api, token})", [api_url(stack), token]
    )

    assert call_id.startswith("rtc_")
    assert seen(page, "minted") == [{"kind": "minted", "model": "gpt-realtime-2.1"}]
    # The SDK's own session.update was taken (its connect waits for the answer).
    wait_until(page, "window.sdkApp.seen.some((e) => e.kind === 'session.updated')")
    assert not seen(page, "error")
    state = emulator_state(stack)
    assert [c["id"] for c in state["open_calls"]] == [call_id]
    offer = state["last_requests"]["calls"]
    # The SDK's offer reached OpenAI with the secret and the SDK's header: the preflight passed.
    assert offer["auth"] == "client_secret"
    assert offer["headers"]["X-OpenAI-Agents-SDK"].startswith("openai-agents-sdk.")
    page.evaluate("window.sdkApp.hangUp()")
    wait_until(page, "window.sdkApp.seen.some((e) => e.kind === 'hung up')")


def test_a_secret_for_another_model_refuses_the_sdks_own_default_by_name(
    new_context: Callable[..., Any], stack: Stack, site: str
) -> None:
    """The SDK pins its default model (gpt-realtime-2.1) in its first session.update; a secret
    minted for the mini model refuses that update whole, and the app hears both names."""
    page = open_app(new_context, site)
    token = stack.token("sdk-wrong-model", scopes=SECRET_SCOPES)

    page.evaluate(
        "([api, token]) => window.sdkApp.clientSecrets({api, token,"
        " model: 'gpt-realtime-2.1-mini', sdkModel: null})",
        [api_url(stack), token],
    )

    wait_until(page, "window.sdkApp.seen.some((e) => e.kind === 'error')")
    (error,) = seen(page, "error")
    assert error["text"].startswith("session.model: ")
    assert "'gpt-realtime-2.1-mini'" in error["text"] and "'gpt-realtime-2.1'" in error["text"]
    page.evaluate("window.sdkApp.hangUp()")


def test_the_agents_sdk_places_a_server_owned_call_through_the_api_with_the_users_token(
    new_context: Callable[..., Any], stack: Stack, site: str
) -> None:
    page = open_app(new_context, site)
    token = stack.token("sdk-calls")

    call_id = page.evaluate(
        "([api, token]) => window.sdkApp.serverOwnedCall({api, token})", [api_url(stack), token]
    )

    # Our server placed it (the standard key upstream), and the user's ledger holds it.
    assert [c["id"] for c in live_calls(stack, "sdk-calls")["data"]] == [call_id]
    state = emulator_state(stack)
    assert state["last_requests"]["calls"]["auth"] == "server_key"
    assert [c["id"] for c in state["open_calls"]] == [call_id]
    wait_until(page, "window.sdkApp.seen.some((e) => e.kind === 'session.updated')")
    assert not seen(page, "error")

    page.evaluate("window.sdkApp.hangUp()")
    wait_until(page, "window.sdkApp.seen.some((e) => e.kind === 'hung up')")
    assert seen(page, "hung up") == [{"kind": "hung up", "status": 200, "endReason": "hangup"}]
    assert live_calls(stack, "sdk-calls")["data"] == []


def test_the_openai_package_places_a_live_session_through_the_api(
    new_context: Callable[..., Any], stack: Stack, site: str
) -> None:
    """GPT-Live has no Agents SDK helpers; the `openai` package's `live.create` is OpenAI's
    own create, and pointed at our API with the user's token it places a watched session."""
    page = open_app(new_context, site)
    token = stack.token("sdk-live")

    session_id = page.evaluate(
        "([api, token]) => window.sdkApp.liveSession({api, token})", [api_url(stack), token]
    )

    assert session_id.startswith("live_")
    listed = live_calls(stack, "sdk-live")["data"]
    assert [(c["id"], c["object"]) for c in listed] == [(session_id, "live.session")]
    state = emulator_state(stack)
    assert state["last_requests"]["live_sessions"]["auth"] == "server_key"
    page.evaluate("window.sdkApp.hangUp()")
    wait_until(page, "window.sdkApp.seen.some((e) => e.kind === 'hung up')")
    assert seen(page, "hung up") == [{"kind": "hung up", "status": 200, "endReason": "hangup"}]
    assert live_calls(stack, "sdk-live")["data"] == []


def test_when_the_server_ends_the_call_the_sdk_app_learns_why_from_the_api(
    new_context: Callable[..., Any], short_stack: Stack, short_site: str
) -> None:
    """At the call's deadline the server hangs up; the SDK reports only its data channel's
    failure, and the app's hangup through the API answers the reason."""
    page = open_app(new_context, short_site)
    token = short_stack.token("sdk-deadline")
    page.evaluate(
        "([api, token]) => window.sdkApp.serverOwnedCall({api, token})",
        [api_url(short_stack), token],
    )

    wait_until(
        page, "window.sdkApp.seen.some((e) => e.kind === 'ended')", (SHORT_CALL_S + 10) * 1000
    )

    assert seen(page, "ended") == [{"kind": "ended", "status": 200, "endReason": "deadline"}]
    assert [e["text"] for e in seen(page, "error")] == ["error: sctp-failure"]
    assert live_calls(short_stack, "sdk-deadline")["data"] == []


def test_a_profile_that_hangs_up_on_a_session_change_ends_an_sdk_call_at_once(
    new_context: Callable[..., Any], policy_stack: Stack, policy_site: str
) -> None:
    """The SDK's first session.update carries its agent's instructions: a deviation from the
    profile, so a profile with `on_session_change: hangup` ends every call the SDK places."""
    page = open_app(new_context, policy_site)
    token = policy_stack.token("sdk-policy")
    page.evaluate(
        "([api, token]) => window.sdkApp.serverOwnedCall({api, token}).catch(String)",
        [api_url(policy_stack), token],
    )

    wait_until(page, "window.sdkApp.seen.some((e) => e.kind === 'ended')")

    assert seen(page, "ended") == [{"kind": "ended", "status": 200, "endReason": "policy"}]
    assert live_calls(policy_stack, "sdk-policy")["data"] == []


def test_a_csp_refusal_the_console_never_shows_still_fails_a_browser_test(
    new_context: Callable[..., Any], site: str, csp_refusals: list[str]
) -> None:
    """The SDK loaded without zod's `jitless` setting: zod's `new Function` probe is refused by
    the CSP and caught, and nothing reaches the console; the fixtures' listener sees it."""
    context = new_context()
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))

    page.goto(site + "/eval-probe.html")
    wait_until(page, "window.sdkLoaded === true")
    settle(context)

    provoked = [r for r in csp_refusals if "script-src refused eval" in r]
    assert len(provoked) == 1 and "eval-probe.js" in provoked[0], csp_refusals
    assert not [m for m in console if "Content Security Policy" in m]
    csp_refusals.remove(provoked[0])
