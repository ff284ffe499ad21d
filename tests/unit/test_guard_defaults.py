"""Every session field a browser can change is held: at the profile's value when it names
one, else at OpenAI's documented default, else (where OpenAI documents none) at what OpenAI
first reported for the call. Checked against the `openai` package's typed session, so a field
OpenAI adds to it is a failing test here until the guard holds it too."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from openai.types.realtime import RealtimeSessionCreateRequest
from openai.types.realtime.realtime_audio_config_input import RealtimeAudioConfigInput
from openai.types.realtime.realtime_audio_config_output import RealtimeAudioConfigOutput
from token_vendor.watcher.guard import (
    FIRST_REPORTED,
    IMMUTABLE,
    deviations,
    expected_session,
    hold_first_reported,
    restore_event,
)

from devstack.openai_schema import apply_session, build_session, check_session
from tests.support.aws import Aws
from tests.support.clock import Clock
from tests.support.watch import NOW, never, timing, updated, watcher

PROFILE = {
    "type": "realtime",
    "model": "gpt-realtime-2.1",
    "instructions": "Be brief.",
    "max_output_tokens": 1024,
    "audio": {"output": {"voice": "marin"}},
}


def held_paths(expected: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in expected.items():
        path = f"{prefix}{key}"
        paths.add(path)
        if key == "audio" or (prefix.startswith("audio") and key in ("input", "output")):
            paths |= held_paths(value, f"{path}.")
    return paths


def test_every_field_of_openais_typed_session_is_held_or_immutable() -> None:
    expected = expected_session(PROFILE)
    held = held_paths(expected) | set(FIRST_REPORTED) | set(IMMUTABLE)
    fields = {f for f in RealtimeSessionCreateRequest.model_fields}
    fields |= {f"audio.input.{f}" for f in RealtimeAudioConfigInput.model_fields}
    fields |= {f"audio.output.{f}" for f in RealtimeAudioConfigOutput.model_fields}
    assert fields - held == set()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tracing", "auto"),  # the browser would write traces into the operator's dashboard
        ("include", ["item.input_audio_transcription.logprobs"]),
        ("truncation", "disabled"),
        ("prompt", {"id": "pmpt_1"}),
        ("output_modalities", ["text"]),
    ],
)
def test_a_field_the_profile_does_not_name_is_held_at_openais_default(
    field: str, value: Any
) -> None:
    expected = expected_session(PROFILE)
    live = build_session(PROFILE)
    assert deviations(expected, live) == []

    changed = apply_session(live, {field: value})

    assert deviations(expected, changed) == [field]
    restored = apply_session(changed, restore_event(expected)["session"])
    assert deviations(expected, restored) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("audio.input.turn_detection", {"type": "semantic_vad", "eagerness": "high"}),
        ("audio.input.noise_reduction", {"type": "far_field"}),
        ("audio.input.transcription", {"model": "gpt-4o-transcribe"}),
        ("audio.output.speed", 1.5),
    ],
)
def test_audio_settings_the_profile_does_not_name_are_held_too(path: str, value: Any) -> None:
    expected = expected_session(PROFILE)
    _, direction, key = path.split(".")
    changed = apply_session(build_session(PROFILE), {"audio": {direction: {key: value}}})

    found = deviations(expected, changed)
    assert found and all(p.startswith(path) for p in found), found


def test_a_field_openai_documents_no_default_for_is_held_as_first_reported() -> None:
    """OpenAI's answer to the watcher's first restore, before the browser is connected,
    reports them as OpenAI set them; later changes are deviations and put back."""
    expected = expected_session(PROFILE)
    first = build_session(PROFILE) | {"reasoning": {"effort": "low"}, "parallel_tool_calls": True}
    held = hold_first_reported(expected, first)

    assert held["reasoning"] == {"effort": "low"} and held["parallel_tool_calls"] is True
    later = copy.deepcopy(first) | {"reasoning": {"effort": "high"}}
    assert [p.split(".")[0] for p in deviations(held, later)] == ["reasoning"]
    assert restore_event(held)["session"]["reasoning"] == {"effort": "low"}


def test_what_the_profile_fixes_is_not_replaced_by_what_openai_first_reports() -> None:
    expected = expected_session(PROFILE | {"reasoning": {"effort": "medium"}})
    held = hold_first_reported(expected, build_session(PROFILE) | {"reasoning": {"effort": "low"}})
    assert held["reasoning"] == {"effort": "medium"}


def test_the_restore_is_a_session_update_openai_accepts() -> None:
    check_session(restore_event(expected_session(PROFILE))["session"])


def test_the_watcher_holds_what_openai_first_reported_for_the_call(aws: Aws) -> None:
    clock = Clock(NOW)
    first = updated(reasoning={"effort": "low"})
    raised = updated(reasoning={"effort": "high"})
    watch, events, recorder, _ = watcher(aws, clock, [first, raised, first])

    watch.run(timing(), never)

    restores = [e["session"] for e in events.sent if e["type"] == "session.update"]
    assert len(restores) == 2 and restores[1]["reasoning"] == {"effort": "low"}
    assert recorder.names().count("PolicyDeviations") == 1
