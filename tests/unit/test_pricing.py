"""Pricing: the formula of docs/openai-contract.md §8.2, exact to the micro-dollar, and the
table."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from token_vendor.core.pricing import (
    DEFAULT_PRICES_FILE,
    PriceTable,
    load_prices,
    response_cost,
    transcription_cost,
)

from tests.support.realtime import usage


@pytest.fixture(scope="module")
def table() -> PriceTable:
    problems: list[str] = []
    prices = load_prices(DEFAULT_PRICES_FILE, "", problems)
    assert problems == []
    return prices


# The recorded sample of the shared document, priced by hand for gpt-realtime-2.1:
# 12 text in x 4 + 9 text out x 24 + 61 audio out x 64 = 48 + 216 + 3904 = 4168 micro-dollars.
SAMPLE = {
    "total_tokens": 82,
    "input_tokens": 12,
    "output_tokens": 70,
    "input_token_details": {
        "text_tokens": 12,
        "audio_tokens": 0,
        "image_tokens": 0,
        "cached_tokens": 0,
        "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
    },
    "output_token_details": {"text_tokens": 9, "audio_tokens": 61},
}


def test_the_documented_sample(table: PriceTable) -> None:
    price, known = table.for_model("gpt-realtime-2.1")
    assert known and response_cost(SAMPLE, price) == 4168


def test_every_term_of_the_formula(table: PriceTable) -> None:
    full, _ = table.for_model("gpt-realtime-2.1")
    mini, _ = table.for_model("gpt-realtime-2.1-mini")
    # (1000-200)*4 + 200*0.40 + (5000-1000)*32 + 1000*0.40 + (100-50)*5 + 50*0.50
    # + 300*24 + 2000*64 = 3200 + 80 + 128000 + 400 + 250 + 25 + 7200 + 128000
    big = usage(1000, 5000, 100, 200, 1000, 50, 300, 2000)
    assert response_cost(big, full) == 267_155
    # mini: 800*0.60 + 200*0.06 + 4000*10 + 1000*0.30 + 50*0.80 + 50*0.08 + 300*2.40 + 2000*20
    # = 480 + 12 + 40000 + 300 + 40 + 4 + 720 + 40000
    assert response_cost(big, mini) == 81_556


def test_fractions_round_up_once_per_response(table: PriceTable) -> None:
    mini, _ = table.for_model("gpt-realtime-2.1-mini")
    # 1 text token in at 0.60 micro-dollars: never free, never more than a micro-dollar over.
    assert response_cost(usage(text_in=1), mini) == 1
    assert response_cost(usage(text_in=10), mini) == 6
    assert response_cost(usage(text_in=11), mini) == 7  # 6.6 -> 7


def test_missing_fields_count_zero(table: PriceTable) -> None:
    price, _ = table.for_model("gpt-realtime-2.1")
    assert response_cost(None, price) == 0
    assert response_cost({}, price) == 0
    assert response_cost({"output_token_details": {"audio_tokens": 10}}, price) == 640
    nulls = {"input_tokens": None, "input_token_details": None, "output_token_details": None}
    assert response_cost(nulls, price) == 0
    assert response_cost({"input_token_details": {"text_tokens": "12"}}, price) == 0
    assert response_cost({"input_token_details": {"text_tokens": -5}}, price) == 0
    assert response_cost({"input_token_details": {"text_tokens": True}}, price) == 0


def test_cached_tokens_are_a_subset_of_input(table: PriceTable) -> None:
    price, _ = table.for_model("gpt-realtime-2.1")
    # More cached than input is clamped: 10 text tokens all cached = 10 * 0.40 = 4.
    claimed = usage(text_in=10, cached_text=50)
    assert response_cost(claimed, price) == 4


def test_totals_without_details_are_charged_at_the_dearest_modality(table: PriceTable) -> None:
    price, _ = table.for_model("gpt-realtime-2.1")
    # 10 input tokens nobody attributes: audio's 32; 5 output tokens: audio's 64.
    assert response_cost({"input_tokens": 10, "output_tokens": 5}, price) == 640
    partial = {"input_tokens": 10, "input_token_details": {"text_tokens": 4}}
    assert response_cost(partial, price) == 4 * 4 + 6 * 32


def test_snapshots_and_unknown_models(table: PriceTable) -> None:
    dated, known = table.for_model("gpt-realtime-2.1-mini-2026-08-01")
    assert known and dated == table.for_model("gpt-realtime-2.1-mini")[0]
    unknown, known = table.for_model("gpt-realtime-9")
    assert not known
    # Charged like the dearest: text out 24, audio in 32, and no cache discount.
    assert unknown.output["text"] == Decimal(24) and unknown.input["audio"] == Decimal(32)
    assert response_cost(usage(text_in=10, cached_text=10), unknown) == 40


def test_transcription_by_tokens_and_by_duration(table: PriceTable) -> None:
    mini, known = table.for_transcription("gpt-4o-mini-transcribe")
    assert known
    tokens = {
        "type": "tokens",
        "total_tokens": 120,
        "input_tokens": 100,
        "input_token_details": {"text_tokens": 10, "audio_tokens": 90},
        "output_tokens": 20,
    }
    # 10 x 1.25 + 90 x 3 + 20 x 5 = 12.5 + 270 + 100 = 382.5 -> 383
    assert transcription_cost(tokens, mini) == 383
    whisper, _ = table.for_transcription("gpt-realtime-whisper")
    # 0.017 USD a minute: 90 s = 0.0255 USD = 25_500 micro-dollars.
    assert transcription_cost({"type": "duration", "seconds": 90}, whisper) == 25_500
    assert transcription_cost({"type": "duration", "seconds": 1.5}, whisper) == 425
    for nothing in (None, {}, {"type": "duration"}, {"type": "duration", "seconds": -3}):
        assert transcription_cost(nothing, whisper) == 0
    # A duration for a model priced by tokens: the dearest per-minute price in the table.
    assert transcription_cost({"type": "duration", "seconds": 60}, mini) == 17_000


def test_the_operator_overrides_whole_models(tmp_path: Path) -> None:
    problems: list[str] = []
    override = {
        "as_of": "2027-01-01",
        "realtime": {
            "gpt-realtime-2.1": {
                "text": {"input": 2, "output": 12},
                "audio": {"input": "16", "cached": "0.2", "output": 32},
            },
            "my-finetune": {"text": {"input": 1, "output": 1}, "audio": {"input": 1, "output": 1}},
        },
    }
    prices = load_prices(DEFAULT_PRICES_FILE, json.dumps(override), problems)
    assert problems == [] and prices.as_of == "2027-01-01"
    price, _ = prices.for_model("gpt-realtime-2.1")
    # No cached text price given: a cached token costs what a fresh one does, never more.
    assert response_cost(usage(text_in=10, cached_text=10, audio_out=1), price) == 20 + 32
    assert prices.for_model("my-finetune")[1]
    assert prices.for_model("gpt-realtime-2.1-mini")[0].input["text"] == Decimal("0.60")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("{not json", "not valid JSON"),
        ('{"models": {}}', "expected an object"),
        ('{"realtime": {"m": {"text": {"input": -1, "output": 1}}}}', "non-negative"),
        ('{"realtime": {"m": {"text": {"input": "x", "output": 1}}}}', "non-negative"),
        ('{"realtime": {"m": {"text": {"input": 1, "output": 1}}}}', "needs audio.input"),
        ('{"realtime": {"m": 3}}', "must be an object"),
        ('{"realtime": {"m": {"text": {"input": true, "output": 1}}}}', "non-negative"),
    ],
)
def test_bad_overrides_are_named(override: str, expected: str) -> None:
    problems: list[str] = []
    load_prices(DEFAULT_PRICES_FILE, override, problems)
    assert any(expected in problem for problem in problems), problems


def test_a_missing_table_is_a_problem(tmp_path: Path) -> None:
    problems: list[str] = []
    load_prices(tmp_path / "nope.json", "", problems)
    assert problems and "PRICES_FILE" in problems[0]


def test_the_shipped_table_matches_the_shared_document(table: PriceTable) -> None:
    assert table.as_of == "2026-11-30"
    for model in ("gpt-realtime-2.1", "gpt-realtime-2", "gpt-realtime-1.5", "gpt-realtime"):
        price, _ = table.for_model(model)
        assert price.input == {"text": 4, "audio": 32, "image": 5}
        assert price.cached == {
            "text": Decimal("0.40"),
            "audio": Decimal("0.40"),
            "image": Decimal("0.50"),
        }
        assert price.output["audio"] == 64
    assert table.for_model("gpt-realtime-2.1")[0].output["text"] == 24
    assert table.for_model("gpt-realtime-1.5")[0].output["text"] == 16
    mini, _ = table.for_model("gpt-realtime-mini")
    assert mini.output == {"text": Decimal("2.40"), "audio": 20}
