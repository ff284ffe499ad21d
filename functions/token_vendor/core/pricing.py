"""What a conversation costs: the price table; the formula of docs/openai-contract.md §8 for a
Realtime response; GPT-Live's voice, per second, and its delegated backend (docs/live.md).

Pure: usage in, integer micro-dollars out. A price of P USD per 1M tokens is P micro-dollars
per token, so the formula needs no scale factor, and Decimal keeps it exact until the one
rounding, up to the next micro-dollar, per priced event (a meter may err high, never low).

    cost = Σ_m [(in_m - cached_m)·P_in_m + cached_m·P_cached_m]
           + out_text·P_out_text + out_audio·P_out_audio           for m ∈ {text, audio, image}

Every usage field is optional: a missing one counts 0; cached tokens are a subset of input
tokens (clamped to them). Input or output tokens the details do not attribute to a modality
are priced at that side's dearest modality, so a usage with totals but no details is not free.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

DEFAULT_PRICES_FILE = Path(__file__).with_name("prices.json")
SECTIONS = ("realtime", "transcription", "live", "responses")
INPUT_MODALITIES = ("text", "audio", "image")
OUTPUT_MODALITIES = ("text", "audio")
ZERO = Decimal(0)
_SNAPSHOT = re.compile(r"^(?P<base>.+)-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class RealtimePrice:
    """USD per 1M tokens (= micro-dollars per token) by modality."""

    input: Mapping[str, Decimal]
    cached: Mapping[str, Decimal]
    output: Mapping[str, Decimal]


@dataclass(frozen=True)
class TranscriptionPrice:
    per_minute: Decimal  # USD, for usage of type "duration"
    text_input: Decimal
    audio_input: Decimal
    text_output: Decimal


@dataclass(frozen=True)
class LivePrice:
    """GPT-Live voice: USD per minute, billed per second (active, and standby)."""

    active_per_minute: Decimal
    standby_per_minute: Decimal


@dataclass(frozen=True)
class TokenPrice:
    """A Responses model (a Live session's delegated backend): USD per 1M tokens."""

    input: Decimal
    cached: Decimal
    output: Decimal


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    realtime: Mapping[str, RealtimePrice]
    transcription: Mapping[str, TranscriptionPrice]
    live: Mapping[str, LivePrice] = field(default_factory=dict)
    responses: Mapping[str, TokenPrice] = field(default_factory=dict)

    def for_model(self, model: str) -> tuple[RealtimePrice, bool]:
        """The model's prices (a dated snapshot takes its family's), and whether it was
        known. An unknown model is charged the dearest price of every field: never free."""
        price = _lookup(self.realtime, model)
        if price is not None:
            return price, True
        return _dearest_realtime(self.realtime.values()), False

    def for_transcription(self, model: str) -> tuple[TranscriptionPrice, bool]:
        price = _lookup(self.transcription, model)
        if price is not None:
            return price, True
        return _dearest_transcription(self.transcription.values()), False

    def for_live(self, model: str) -> tuple[LivePrice, bool]:
        price = _lookup(self.live, model)
        if price is not None:
            return price, True
        dearest = max((p.active_per_minute for p in self.live.values()), default=ZERO)
        standby = max((p.standby_per_minute for p in self.live.values()), default=ZERO)
        return LivePrice(dearest, max(standby, dearest)), False

    def for_backend(self, model: str) -> tuple[TokenPrice, bool]:
        price = _lookup(self.responses, model)
        if price is not None:
            return price, True
        prices = list(self.responses.values())
        top = max((max(p.input, p.output) for p in prices), default=ZERO)
        return TokenPrice(top, top, top), False


def _lookup(table: Mapping[str, Any], model: str) -> Any:
    if model in table:
        return table[model]
    snapshot = _SNAPSHOT.match(model)
    return table.get(snapshot.group("base")) if snapshot else None


# --- the formula ---------------------------------------------------------------------------


def response_cost(usage: Any, price: RealtimePrice) -> int:
    """Micro-dollars for one `response.done` usage."""
    usage = _mapping(usage)
    details_in = _mapping(usage.get("input_token_details"))
    cached_details = _mapping(details_in.get("cached_tokens_details"))
    details_out = _mapping(usage.get("output_token_details"))
    total = ZERO
    attributed_in = 0
    for modality in INPUT_MODALITIES:
        tokens = _count(details_in.get(f"{modality}_tokens"))
        cached = min(_count(cached_details.get(f"{modality}_tokens")), tokens)
        attributed_in += tokens
        total += (tokens - cached) * price.input.get(modality, ZERO)
        total += cached * price.cached.get(modality, ZERO)
    attributed_out = 0
    for modality in OUTPUT_MODALITIES:
        tokens = _count(details_out.get(f"{modality}_tokens"))
        attributed_out += tokens
        total += tokens * price.output.get(modality, ZERO)
    total += max(_count(usage.get("input_tokens")) - attributed_in, 0) * max(
        price.input.values(), default=ZERO
    )
    total += max(_count(usage.get("output_tokens")) - attributed_out, 0) * max(
        price.output.values(), default=ZERO
    )
    return _micros(total)


def transcription_cost(usage: Any, price: TranscriptionPrice) -> int:
    """Micro-dollars for one `conversation.item.input_audio_transcription.completed` usage:
    `{"type": "tokens", ...}` or `{"type": "duration", "seconds"}`."""
    usage = _mapping(usage)
    if usage.get("type") == "duration":
        seconds = _seconds(usage.get("seconds"))
        return _micros(seconds * price.per_minute * 1_000_000 / 60)
    details = _mapping(usage.get("input_token_details"))
    text = _count(details.get("text_tokens"))
    audio = _count(details.get("audio_tokens"))
    unattributed = max(_count(usage.get("input_tokens")) - text - audio, 0)
    total = (
        text * price.text_input
        + audio * price.audio_input
        + unattributed * max(price.text_input, price.audio_input)
        + _count(usage.get("output_tokens")) * price.text_output
    )
    return _micros(total)


def live_cost(active_seconds: Any, paused_seconds: Any, price: LivePrice) -> int:
    """Micro-dollars for a Live session's voice so far: its cumulative active and standby
    seconds (never summed across usage events: each is a running total). Charging the
    difference between two totals' costs telescopes to the cost of the last total, so the
    meter ends exact to the micro-dollar whatever the cadence of the updates."""
    active = _seconds(active_seconds) * price.active_per_minute
    paused = _seconds(paused_seconds) * price.standby_per_minute
    return _micros((active + paused) * 1_000_000 / 60)


def live_usage_cost(usage: Any, price: LivePrice) -> int:
    """Micro-dollars for a Live `usage` total (`session.usage.updated`, `session.closed`):
    `{seconds, active_seconds?, paused_seconds?}`. Without the breakdown every second is
    active; a breakdown that does not add up to `seconds` bills the rest as active (never
    less than OpenAI's own count)."""
    usage = _mapping(usage)
    seconds = _seconds(usage.get("seconds"))
    paused = _seconds(usage.get("paused_seconds"))
    active = max(_seconds(usage.get("active_seconds")), seconds - paused)
    return live_cost(active, paused, price)


def backend_cost(usage: Any, price: TokenPrice) -> int:
    """Micro-dollars for one delegated Responses response's `usage` (input, cached among
    them, output with reasoning among them)."""
    usage = _mapping(usage)
    inputs = _count(usage.get("input_tokens"))
    cached = min(_count(_mapping(usage.get("input_tokens_details")).get("cached_tokens")), inputs)
    total = (
        (inputs - cached) * price.input
        + cached * price.cached
        + _count(usage.get("output_tokens")) * price.output
    )
    return _micros(total)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _count(value: Any) -> int:
    # A count is a non-negative integer; anything else (absent, null, a string) counts 0.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def _seconds(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value if value.is_finite() and value > 0 else ZERO
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return ZERO
    if not math.isfinite(value):
        return ZERO
    return Decimal(str(value))


def _micros(amount: Decimal) -> int:
    return int(amount.to_integral_value(rounding="ROUND_CEILING"))


def _dearest_realtime(prices: Any) -> RealtimePrice:
    prices = list(prices)

    def most(side: str, modalities: tuple[str, ...]) -> dict[str, Decimal]:
        return {
            m: max((getattr(p, side).get(m, ZERO) for p in prices), default=ZERO)
            for m in modalities
        }

    return RealtimePrice(
        input=most("input", INPUT_MODALITIES),
        cached=most("input", INPUT_MODALITIES),  # an unknown model's cache is not trusted
        output=most("output", OUTPUT_MODALITIES),
    )


def _dearest_transcription(prices: Any) -> TranscriptionPrice:
    prices = list(prices)

    def most(name: str) -> Decimal:
        return max((getattr(p, name) for p in prices), default=ZERO)

    return TranscriptionPrice(
        per_minute=most("per_minute"),
        text_input=most("text_input"),
        audio_input=most("audio_input"),
        text_output=most("text_output"),
    )


# --- loading -------------------------------------------------------------------------------


def load_prices(path: Path, overrides: str, problems: list[str]) -> PriceTable:
    """The shipped table, with the operator's `PRICES` (JSON: `{"realtime": {model: ...},
    "transcription": {model: ...}}`) replacing or adding whole models."""
    try:
        shipped = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"PRICES_FILE: cannot read {path}: {exc}")
        return PriceTable("", {}, {})
    extra: Any = {}
    if overrides.strip():
        try:
            extra = json.loads(overrides)
        except ValueError:
            problems.append("PRICES: not valid JSON")
        if not isinstance(extra, dict) or set(extra) - {*SECTIONS, "as_of"}:
            problems.append(f"PRICES: expected an object with any of {', '.join(SECTIONS)}")
            extra = {}
    realtime: dict[str, RealtimePrice] = {}
    for name, spec in _merged(shipped, extra, "realtime").items():
        realtime[name] = _realtime_price(name, spec, problems)
    transcription: dict[str, TranscriptionPrice] = {}
    for name, spec in _merged(shipped, extra, "transcription").items():
        transcription[name] = _transcription_price(name, spec, problems)
    if not realtime:
        problems.append("PRICES: the table prices no realtime model")
    # A duration usage for a model priced by tokens is charged the dearest per-minute price.
    per_minute = max((t.per_minute for t in transcription.values()), default=ZERO)
    transcription = {
        name: t if t.per_minute else TranscriptionPrice(per_minute, *_token_prices(t))
        for name, t in transcription.items()
    }
    live = {
        name: _live_price(name, spec, problems)
        for name, spec in _merged(shipped, extra, "live").items()
    }
    responses = {
        name: _token_price(name, spec, problems)
        for name, spec in _merged(shipped, extra, "responses").items()
    }
    as_of = str(extra.get("as_of") or shipped.get("as_of") or "")
    return PriceTable(as_of, realtime, transcription, live, responses)


def _live_price(name: str, spec: Any, problems: list[str]) -> LivePrice:
    spec = spec if isinstance(spec, dict) else {}
    active = _price(spec.get("active_per_minute"), f"live {name}.active_per_minute", problems)
    standby = spec.get("standby_per_minute", spec.get("active_per_minute"))
    return LivePrice(active, _price(standby, f"live {name}.standby_per_minute", problems))


def _token_price(name: str, spec: Any, problems: list[str]) -> TokenPrice:
    spec = spec if isinstance(spec, dict) else {}
    fresh = _price(spec.get("input"), f"responses {name}.input", problems)
    return TokenPrice(
        fresh,
        _price(spec.get("cached", spec.get("input")), f"responses {name}.cached", problems),
        _price(spec.get("output"), f"responses {name}.output", problems),
    )


def _merged(shipped: Any, extra: Any, part: str) -> dict[str, Any]:
    base = shipped.get(part) if isinstance(shipped, dict) else None
    more = extra.get(part) if isinstance(extra, dict) else None
    return dict(base if isinstance(base, dict) else {}) | dict(
        more if isinstance(more, dict) else {}
    )


def _price(value: Any, where: str, problems: list[str]) -> Decimal:
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        price = Decimal(-1)
    if isinstance(value, bool) or not price.is_finite() or price < 0:
        problems.append(f"PRICES: {where} must be a non-negative number, got {value!r}")
        return ZERO
    return price


def _side(spec: Any, modality: str, side: str, name: str, problems: list[str]) -> Decimal | None:
    block = spec.get(modality) if isinstance(spec, dict) else None
    if not isinstance(block, dict) or side not in block:
        return None
    return _price(block[side], f"{name}.{modality}.{side}", problems)


def _realtime_price(name: str, spec: Any, problems: list[str]) -> RealtimePrice:
    if not isinstance(spec, dict):
        problems.append(f"PRICES: realtime model {name!r} must be an object")
        spec = {}
    prices: dict[str, dict[str, Decimal]] = {"input": {}, "cached": {}, "output": {}}
    for modality in INPUT_MODALITIES:
        for side in ("input", "cached"):
            found = _side(spec, modality, side, name, problems)
            if found is not None:
                prices[side][modality] = found
    for modality in OUTPUT_MODALITIES:
        found = _side(spec, modality, "output", name, problems)
        if found is not None:
            prices["output"][modality] = found
    for required in ("text", "audio"):
        if required not in prices["input"] or required not in prices["output"]:
            problems.append(f"PRICES: {name} needs {required}.input and {required}.output")
    for modality, value in prices["input"].items():
        # A token read from the cache is never billed above a fresh one.
        prices["cached"].setdefault(modality, value)
    return RealtimePrice(prices["input"], prices["cached"], prices["output"])


def _token_prices(price: TranscriptionPrice) -> tuple[Decimal, Decimal, Decimal]:
    return price.text_input, price.audio_input, price.text_output


def _transcription_price(name: str, spec: Any, problems: list[str]) -> TranscriptionPrice:
    if not isinstance(spec, dict):
        problems.append(f"PRICES: transcription model {name!r} must be an object")
        spec = {}
    per_minute = spec.get("per_minute")
    return TranscriptionPrice(
        per_minute=_price(per_minute, f"{name}.per_minute", problems)
        if per_minute is not None
        else ZERO,
        text_input=_side(spec, "text", "input", name, problems) or ZERO,
        audio_input=_side(spec, "audio", "input", name, problems) or ZERO,
        text_output=_side(spec, "text", "output", name, problems) or ZERO,
    )
