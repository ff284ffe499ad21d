"""Exact spend accounting, end to end (issue 12, "Done when"): the token function places two
calls for one user on two realtime models (POST /v1/realtime/calls with the user's JWT, each
starting its watcher), a real WebRTC caller (aiortc) speaks and listens in both at once, and
the emulator reports a scripted sequence of usages (responses, and input transcriptions
billed by tokens and by the minute) followed by its own counts.

The oracle is independent of the function's pricing code: the usages the emulator says it
reported (`/__emulator/state`) priced with the raw numbers of prices.json, in exact fractions,
rounded up to the micro-dollar once per event (docs/watcher.md, "What is exact"). The user's
day, everyone's day and each call's meter in DynamoDB must equal it to the micro-dollar."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import aws
from devstack.stack import SHIPPED_PROFILES, TABLE, Stack, start_stack
from tests.support.caller import Caller
from tests.support.realtime import usage, user_says
from tests.support.stack import emulator_call, emulator_url, eventually

pytestmark = pytest.mark.stack

PRICES = Path(__file__).resolve().parents[2] / "functions" / "token_vendor" / "core" / "prices.json"
USER = "accountant"
TRANSCRIBED = "conversation.item.input_audio_transcription.completed"
# A second profile, on the other model family and a transcription model billed by the minute.
DICTATION = {
    "models": ["gpt-realtime-2.1-mini"],
    "instructions": "Take dictation. Repeat back what you heard, briefly.",
    "voices": ["marin"],
    "expires_after_seconds": 60,
    "max_expires_after_seconds": 60,
    "session": {
        "output_modalities": ["audio"],
        "audio": {"input": {"transcription": {"model": "gpt-realtime-whisper"}}},
    },
    "required_scopes": [],
    "expose_instructions": False,
}


# Sizes a long conversation reaches: thousands of cached audio tokens, an image, a long answer;
# and odd counts, so that every event's rounding shows.
SCRIPTS: dict[str, dict[str, Any]] = {
    "assistant": {
        "responses": [
            usage(1_231, 377, 0, 0, 0, 0, 57, 413),
            usage(2_417, 1_909, 765, 1_152, 1_536, 0, 101, 1_337),
            usage(3_001, 4_093, 765, 2_944, 3_968, 640, 13, 97),
        ],
        "transcriptions": [
            {
                "transcript": "What is on my calendar tomorrow morning?",
                "usage": {
                    "type": "tokens",
                    "total_tokens": 71,
                    "input_tokens": 60,
                    "input_token_details": {"text_tokens": 3, "audio_tokens": 57},
                    "output_tokens": 11,
                },
            }
        ],
    },
    "dictation": {
        "responses": [
            usage(887, 1_203, 0, 512, 768, 0, 211, 1_687),
            usage(1_999, 2_411, 0, 1_024, 2_048, 0, 7, 53),
        ],
        "transcriptions": [
            {"transcript": "Dear Sam, thank you.", "usage": {"type": "duration", "seconds": 2.5}},
            {"transcript": "Best regards.", "usage": {"type": "duration", "seconds": 7.3}},
        ],
    },
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    profiles = json.loads(SHIPPED_PROFILES.read_text())
    profiles["profiles"]["dictation"] = DICTATION
    path = tmp_path_factory.mktemp("profiles") / "profiles.json"
    path.write_text(json.dumps(profiles))
    with start_stack(
        ports="auto",
        extra_env={
            "PROFILES_FILE": str(path),
            "CALL_LIMITS": "concurrent=2,minutes/day=60",
            # Metered, never reached; the global limit makes everyone's day counted too.
            "SPEND_LIMITS": "usd/day=100,global:usd/day=1000",
        },
    ) as running:
        yield running


# --- the oracle: prices.json's numbers, nothing of token_vendor ---------------------------


def price_table() -> dict[str, Any]:
    return dict(json.loads(PRICES.read_text()))


def response_micros(used: dict[str, Any], prices: dict[str, Any]) -> int:
    """USD per 1M tokens is micro-dollars per token."""
    details, out = used["input_token_details"], used["output_token_details"]
    cached = details["cached_tokens_details"]
    total = Fraction(0)
    for modality in ("text", "audio", "image"):
        fresh = details[f"{modality}_tokens"] - cached[f"{modality}_tokens"]
        total += fresh * Fraction(prices[modality]["input"])
        total += cached[f"{modality}_tokens"] * Fraction(prices[modality]["cached"])
    for modality in ("text", "audio"):
        total += out[f"{modality}_tokens"] * Fraction(prices[modality]["output"])
    return math.ceil(total)


def transcription_micros(used: dict[str, Any], prices: dict[str, Any]) -> int:
    if used["type"] == "duration":
        return math.ceil(
            Fraction(str(used["seconds"])) * Fraction(prices["per_minute"]) * 10**6 / 60
        )
    details = used["input_token_details"]
    return math.ceil(
        details["text_tokens"] * Fraction(prices["text"]["input"])
        + details["audio_tokens"] * Fraction(prices["audio"]["input"])
        + used["output_tokens"] * Fraction(prices["text"]["output"])
    )


def priced(record: dict[str, Any], table: dict[str, Any]) -> int:
    used = record["usage"]
    if record["kind"] == "transcription":
        return transcription_micros(used, table["transcription"][record["model"]])
    # The oracle prices only what it can price without a rule of the function's: every
    # token attributed to a modality, cached tokens within their modality.
    details = used["input_token_details"]
    assert used["input_tokens"] == sum(details[f"{m}_tokens"] for m in ("text", "audio", "image"))
    assert used["output_tokens"] == sum(used["output_token_details"].values())
    for modality, tokens in details["cached_tokens_details"].items():
        assert tokens <= details[modality]
    return response_micros(used, table["realtime"][record["model"]])


# --- the stack -----------------------------------------------------------------------------


def table_items(stack: Stack, prefix: str) -> dict[str, int]:
    """Every item whose key starts with `prefix`, and its micro-dollars."""
    client = aws.client("dynamodb", stack.urls["aws"])
    items = client.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return {
        item["pk"]["S"]: int(item.get("micros", {}).get("N", "0"))
        for item in items
        if item["pk"]["S"].startswith(prefix)
    }


def lease_ended(stack: Stack, call_id: str) -> bool:
    item = aws.client("dynamodb", stack.urls["aws"]).get_item(
        TableName=TABLE, Key={"pk": {"S": f"watch#{call_id}"}}, ConsistentRead=True
    )
    return "ended" in item.get("Item", {})


async def place(client: httpx.Client, caller: Caller, profile: str, model: str) -> str:
    offer = await caller.offer()
    reply = await asyncio.to_thread(
        client.post,
        f"/v1/realtime/calls?profile={profile}",
        files={
            "sdp": (None, offer, "application/sdp"),
            "session": (None, json.dumps({"type": "realtime", "model": model}), "application/json"),
        },
    )
    assert reply.status_code == 201, reply.text
    call_id = reply.headers["location"].rsplit("/", 1)[-1]
    await caller.accept(reply.text)
    await caller.until("conversation.created")
    return call_id


async def speak(caller: Caller) -> None:
    """A spoken turn: half a second of the microphone, committed, transcribed, answered."""
    await asyncio.sleep(0.5)
    caller.send({"type": "input_audio_buffer.commit"})
    await caller.until(TRANSCRIBED)
    caller.send({"type": "response.create"})
    await caller.until("response.done")


async def converse(stack: Stack, client: httpx.Client, profile: str, model: str) -> str:
    """The call's script first (its sizes), then turns the emulator counts itself."""
    caller = Caller(microphone=True)
    try:
        call_id = await place(client, caller, profile, model)
        await eventually(
            lambda: emulator_call(stack, call_id).get("sidebands") == 1, 10, "watcher attached"
        )
        scripted = httpx.post(
            f"{emulator_url(stack)}/__emulator/calls/{call_id}/script",
            json=SCRIPTS[profile],
            timeout=10,
        )
        assert scripted.status_code == 200, scripted.text
        script = SCRIPTS[profile]
        turns = len(script["transcriptions"]) + 1  # the last one transcribed as counted
        for _ in range(turns):
            await speak(caller)
        for _ in range(len(script["responses"]) - turns):  # the model goes on talking
            caller.send({"type": "response.create"})
            await caller.until("response.done")
        caller.send(user_says("thank you, that is all"))  # answered as counted
        caller.send({"type": "response.create"})
        await caller.until("response.done")
        hung = await asyncio.to_thread(client.post, f"/v1/realtime/calls/{call_id}/hangup")
        assert hung.status_code in (200, 204), hung.text
        await eventually(lambda: lease_ended(stack, call_id), 15, "watcher done")
        return call_id
    finally:
        await caller.close()


async def two_calls(stack: Stack) -> tuple[str, str]:
    with httpx.Client(
        base_url=stack.urls["web"],
        headers={"Authorization": f"Bearer {stack.token(USER)}"},
        timeout=15,
    ) as client:
        first, second = await asyncio.gather(
            converse(stack, client, "assistant", "gpt-realtime-2.1"),
            converse(stack, client, "dictation", "gpt-realtime-2.1-mini"),
        )
    return first, second


# --- the test --------------------------------------------------------------------------------


def test_two_models_and_their_transcriptions_are_charged_to_the_micro_dollar(
    stack: Stack,
) -> None:
    first, second = asyncio.run(asyncio.wait_for(two_calls(stack), 120))
    table = price_table()
    records = {call_id: emulator_call(stack, call_id)["usages"] for call_id in (first, second)}
    # What was reported: both realtime models, both transcription models, both usage types,
    # the script's sizes first and the emulator's own counts after them.
    seen = {(r["kind"], r["model"]) for rs in records.values() for r in rs}
    assert seen == {
        ("response", "gpt-realtime-2.1"),
        ("response", "gpt-realtime-2.1-mini"),
        ("transcription", "gpt-4o-mini-transcribe"),
        ("transcription", "gpt-realtime-whisper"),
    }
    for call_id, profile in ((first, "assistant"), (second, "dictation")):
        script = SCRIPTS[profile]
        reported = records[call_id]
        responses = [r["usage"] for r in reported if r["kind"] == "response"]
        transcriptions = [r["usage"] for r in reported if r["kind"] == "transcription"]
        assert responses[: len(script["responses"])] == script["responses"]
        assert len(responses) > len(script["responses"])
        assert transcriptions[:-1] == [t["usage"] for t in script["transcriptions"]]
    types = {r["usage"]["type"] for rs in records.values() for r in rs if "type" in r["usage"]}
    assert types == {"tokens", "duration"}

    per_call = {call_id: sum(priced(r, table) for r in rs) for call_id, rs in records.items()}
    expected = sum(per_call.values())
    print(
        f"{sum(map(len, records.values()))} usages on 2 models: "
        f"{expected} micro-dollars ({ {c[:12]: m for c, m in per_call.items()} })"
    )
    assert table_items(stack, "meter#") == {f"meter#{c}": m for c, m in per_call.items()}
    days = table_items(stack, "spend#")
    (user_day,) = [v for k, v in days.items() if k.startswith("spend#user#")]
    (global_day,) = [v for k, v in days.items() if k.startswith("spend#all#")]
    assert user_day == expected
    assert global_day == expected
    # And what the user is told is the same figure.
    listing = httpx.get(
        stack.urls["web"] + "/v1/realtime/calls",
        headers={"Authorization": f"Bearer {stack.token(USER)}"},
        timeout=15,
    ).json()
    assert round(listing["spent_today_usd"] * 1_000_000) == expected
