"""The `sam local` recipe of docs/local.md against the local stack: every event through
`sam local invoke`, and `sam local start-api` answering docs/api.md's curl line and a CORS
preflight."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.template import load_template
from tests.support.caller import Caller
from tests.support.env import EVENTS
from tests.support.samlocal import (
    API_DOC,
    LOCAL_DOC,
    SECRETS_SCOPES,
    Recipe,
    SamLocal,
    lambda_containers,
    sh_block,
)

pytestmark = [pytest.mark.samlocal, pytest.mark.stack, pytest.mark.timeout(900)]

ORIGIN = "https://app.example.com"  # in events/env.json's ALLOWED_ORIGINS
# What each event gives; the same statuses tests/integration/test_events.py expects.
EXPECTED_STATUS = {
    "mint.json": 200,
    "disallowed-field.json": 400,
    "missing-token.json": 401,
    "preflight.json": 204,
    "openapi.json": 200,
}
START_API_TIMEOUT = 180.0
CALLS_ROUTE = "/v1/realtime/calls"


def result_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The function's result: `sam local invoke` prints it as the last line of stdout."""
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines, f"no result on stdout; stderr: {done.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def test_every_event_file_has_an_expected_status() -> None:
    names = {p.name for p in EVENTS.glob("*.json")} - {"env.json"}
    assert names == set(EXPECTED_STATUS)


@pytest.mark.parametrize("name", sorted(EXPECTED_STATUS))
def test_sam_local_invoke_gives_each_event_its_status(sam_local: SamLocal, name: str) -> None:
    event = sam_local.event_file(name)
    started = time.monotonic()
    done = sam_local.run(sam_local.recipe.invoke_line(str(event)))
    wall = time.monotonic() - started
    result = result_of(done)

    assert not lambda_containers(), "sam local invoke left its container behind"
    assert result["statusCode"] == EXPECTED_STATUS[name], result
    body: Any = json.loads(result["body"]) if result.get("body") else None
    headers = {k.lower(): v for k, v in result.get("headers", {}).items()}
    if name == "mint.json":
        # A real secret: the container read the key from moto, the keys from the issuer,
        # wrote the quota to moto and minted at the emulator, all over 127.0.0.1.
        assert body["value"].startswith("ek_") and body["expires_at"] > time.time()
        assert headers["access-control-allow-origin"] == ORIGIN
        assert "ratelimit" in headers
    elif name == "disallowed-field.json":
        assert body["field"] == "session.instructions"
    elif name == "missing-token.json":
        assert "www-authenticate" in headers
        assert result["headers"]["Content-Type"].startswith("application/problem+json")
    elif name == "preflight.json":
        assert headers["access-control-allow-origin"] == ORIGIN
    elif name == "openapi.json":
        assert body["openapi"].startswith("3.1")

    # The emulator starts the runtime at the first invoke: its Duration holds the init too
    # (its "Init Duration" does not), so it compares with the in-process cold start.
    duration = re.search(r"\tDuration: ([\d.]+) ms", done.stderr)
    sam_local.timings.setdefault("invoke", {})[name] = {
        "wall_s": round(wall, 2),
        "cold_duration_ms": float(duration.group(1)) if duration else None,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def documented_curl() -> str:
    """The curl line of docs/api.md (section "Client secrets")."""
    lines = [line for line in sh_block(API_DOC.read_text(), "## Client secrets") if line]
    assert len(lines) == 1 and lines[0].startswith("curl ")
    return lines[0] + ' -w "\\n%{http_code}"'


@pytest.fixture(scope="module")
def api(sam_local: SamLocal) -> Iterator[dict[str, Any]]:
    """`sam local start-api` as the recipe runs it, on a free port; timed to its first answer."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    line = sam_local.recipe.start_api + f" --port {port}"
    token = sam_local.stack.token("ann", SECRETS_SCOPES)
    curl_env = sam_local.env() | {"API_URL": url, "USER_ACCESS_TOKEN": token}
    started = time.monotonic()
    process = sam_local.popen(line)
    listening = first = None
    answer = ""
    try:
        while time.monotonic() - started < START_API_TIMEOUT:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            if listening is None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    listening = time.monotonic() - started
                except OSError:
                    time.sleep(0.2)
                    continue
            done = subprocess.run(
                ["bash", "-c", documented_curl()], env=curl_env, capture_output=True, text=True,
                timeout=120, check=False,
            )  # fmt: skip
            if done.returncode == 0:
                answer, first = done.stdout, time.monotonic() - started
                break
            time.sleep(0.5)
        assert first is not None, f"no answer within {START_API_TIMEOUT:.0f} s"
        sam_local.timings["start_api"] = {
            "listening_s": round(listening or 0, 2),
            "first_answer_s": round(first, 2),
        }
        yield {"url": url, "token": token, "first_answer": answer}
    finally:
        process.send_signal(signal.SIGINT)  # SAM CLI removes its containers on Ctrl-C
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert not lambda_containers(), "sam local start-api left its containers behind"


def test_start_api_answers_the_curl_line_with_a_minted_secret(api: dict[str, Any]) -> None:
    body, status = api["first_answer"].rsplit("\n", 1)

    assert status == "200", body
    secret = json.loads(body)
    assert secret["value"].startswith("ek_") and secret["webrtc_url"]


def test_start_api_grants_a_cors_preflight_from_an_allowed_origin(api: dict[str, Any]) -> None:
    reply = httpx.options(
        api["url"] + "/v1/realtime/client_secrets",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=60,
    )

    assert reply.status_code in (200, 204), reply.text  # SAM CLI says 200, API Gateway 204
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in reply.headers["access-control-allow-methods"].upper()
    assert {"authorization", "content-type"} <= set(
        reply.headers["access-control-allow-headers"].lower().split(",")
    )


def test_start_api_refuses_a_preflight_from_another_origin(api: dict[str, Any]) -> None:
    reply = httpx.options(
        api["url"] + "/v1/realtime/client_secrets",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=60,
    )

    assert "access-control-allow-origin" not in reply.headers


def test_start_api_refuses_a_call_without_a_token_as_a_problem(api: dict[str, Any]) -> None:
    reply = httpx.post(api["url"] + "/v1/realtime/client_secrets", json={}, timeout=60)

    assert reply.status_code == 401
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.headers["www-authenticate"].startswith("Bearer")


def calls_routes_in_template() -> set[str]:
    """The API's route keys for server-owned calls (plain AWS::ApiGatewayV2::Route resources,
    which sam local start-api serves like a SAM event)."""
    resources = load_template()["Resources"].values()
    keys = {
        r["Properties"]["RouteKey"] for r in resources if r["Type"] == "AWS::ApiGatewayV2::Route"
    }
    return {k for k in keys if CALLS_ROUTE in k}


def test_start_api_refuses_a_server_owned_call_without_a_token(api: dict[str, Any]) -> None:
    assert {f"POST {CALLS_ROUTE}", f"POST {CALLS_ROUTE}/{{call_id}}/hangup"} <= (
        calls_routes_in_template()
    )
    reply = httpx.post(
        api["url"] + CALLS_ROUTE,
        content="v=0\r\n",
        headers={"Content-Type": "application/sdp"},
        timeout=60,
    )

    assert reply.status_code == 401, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")


def test_start_api_places_a_server_owned_call_and_hangs_it_up(
    api: dict[str, Any], sam_local: SamLocal
) -> None:
    """The page's default flow through sam local: the offer in, the emulator's answer out, a
    connected peer, and the owner's hangup through the API ending it upstream."""
    answer = asyncio.run(asyncio.wait_for(_call(api["url"], sam_local), 240))
    assert answer["status"] == 201, answer
    assert answer["content_type"].startswith("application/sdp")
    assert answer["location"] == f"{CALLS_ROUTE}/{answer['call_id']}"
    assert int(answer["ends_at"]) > time.time()
    assert answer["first_event"] == "session.created"
    assert answer["hangup"]["status"] == "ended" and answer["hangup"]["end_reason"] == "hangup"
    assert answer["channel_closed"]


async def _call(url: str, sam_local: SamLocal) -> dict[str, Any]:
    caller = Caller(microphone=False)
    headers = {"Authorization": f"Bearer {sam_local.stack.token('sam-caller')}"}
    try:
        offer = await caller.offer()
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
            reply = await client.post(
                CALLS_ROUTE, content=offer, headers={"Content-Type": "application/sdp"}
            )
            if reply.status_code != 201:
                return {"status": reply.status_code, "body": reply.text}
            await caller.accept(reply.text)
            first = await caller.next_event(timeout=30)
            call_id = reply.headers["location"].rsplit("/", 1)[-1]
            ended = await client.post(f"{CALLS_ROUTE}/{call_id}/hangup")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(caller.channel_closed.wait(), 10)
            return {
                "status": reply.status_code,
                "content_type": reply.headers["content-type"],
                "location": reply.headers["location"],
                "call_id": call_id,
                "ends_at": reply.headers["call-ends-at"],
                "first_event": first["type"],
                "hangup": ended.json(),
                "channel_closed": caller.channel_closed.is_set(),
            }
    finally:
        await caller.close()


def test_the_recipe_lets_the_api_allow_the_origins_the_function_allows() -> None:
    """API Gateway (and sam local) answer preflights from AllowedOrigins; the function checks
    ALLOWED_ORIGINS from events/env.json: the recipe must give both the same list."""
    recipe = Recipe.from_doc(LOCAL_DOC.read_text())
    local = next(line for line in recipe.setup if line.startswith("LOCAL="))
    allowed = re.search(r"AllowedOrigins=(\S+?)\"?$", local)
    env = json.loads((EVENTS / "env.json").read_text())["TokenFunction"]

    assert allowed and allowed.group(1) == env["ALLOWED_ORIGINS"]
