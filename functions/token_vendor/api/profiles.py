"""Profiles: what the server fixes for each kind of conversation, read from the profiles file.

A profile serves one API family: OpenAI's Realtime API (server-owned calls and, when the
operator opts in, client secrets) or GPT-Live (sessions placed through our API). It fixes the
models and voices a caller may choose from, the instructions, and every other session field;
`load_profiles` checks the whole file at the cold start and names every field at fault.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.parsing import is_int

# The routes a profile may serve: two for the Realtime API, one for GPT-Live.
FLOWS = ("calls", "client_secrets", "live")
REALTIME_FLOWS = ("calls", "client_secrets")
DEFAULT_FLOWS = ("calls",)
ROUTES = {
    "calls": "/v1/realtime/calls",
    "client_secrets": "/v1/realtime/client_secrets",
    "live": "/v1/live/sessions",
}
FAMILIES = ("realtime", "live")
DEFAULT_MAX_CALL_SECONDS = 600
MAX_CALL_SECONDS = 3600  # OpenAI ends every session at 60 minutes anyway
MIN_LIFETIME = 10
MAX_LIFETIME = 600  # a secret can open several sessions until it expires: keep it short
VOICES = {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
# GA session fields a profile may fix; `type`, `model`, `instructions` and the voice have
# profile fields of their own.
SESSION_FIELDS = {
    "output_modalities", "audio", "tools", "tool_choice", "parallel_tool_calls", "reasoning",
    "max_output_tokens", "truncation", "tracing", "prompt", "include",
}  # fmt: skip
AUDIO_INPUT_FIELDS = {"format", "transcription", "noise_reduction", "turn_detection"}
AUDIO_OUTPUT_FIELDS = {"format", "speed"}
PROFILE_FIELDS = {
    "api", "models", "instructions", "voices", "expires_after_seconds",
    "max_expires_after_seconds", "session", "required_scopes", "expose_instructions",
    "max_call_seconds", "flows", "on_session_change",
}  # fmt: skip
# GPT-Live: its built-in voices, and the session fields a profile may fix (the model, the
# instructions and the voice have profile fields of their own; Live has no secrets, so no
# lifetimes; `safety_identifier` is always the caller's pseudonym).
LIVE_VOICES = {
    "alloy", "ash", "ballad", "beacon", "bossa", "cedar", "cinder", "coral", "delta", "echo",
    "gleam", "marin", "meridian", "quartz", "ripple", "sage", "shida", "shimmer", "stone",
    "tempo", "verse", "vesper", "willow",
}  # fmt: skip
LIVE_SESSION_FIELDS = {
    "delegation", "client", "store", "triggers", "wake_policy", "idle_timeout_s", "input",
}  # fmt: skip
# What a Live browser may send on its data channel when the profile says nothing: mute and
# unmute. By default OpenAI lets it send every client event (append instructions, change the
# backend model and tools, close the session); the server must restrict it at the create.
LIVE_DEFAULT_CLIENT_EVENTS = ("session.input_audio.mute", "session.input_audio.unmute")
REALTIME_ONLY_FIELDS = {"expires_after_seconds", "max_expires_after_seconds", "expose_instructions"}
# What the call watcher does when a live session leaves the profile (a browser's
# session.update): put the profile's fields back, or end the call.
SESSION_CHANGE_ACTIONS = ("restore", "hangup")


@dataclass(frozen=True)
class Profile:
    """One server-side profile: the models, voices, lifetime and instructions a mint may use."""

    name: str
    models: tuple[str, ...]  # the first is the default
    instructions: str
    voices: tuple[str, ...]  # the first is the default
    expires_after_seconds: int
    max_expires_after_seconds: int
    session: dict[str, Any]
    required_scopes: tuple[str, ...]
    expose_instructions: bool
    max_call_seconds: int = DEFAULT_MAX_CALL_SECONDS
    flows: tuple[str, ...] = DEFAULT_FLOWS
    on_session_change: str = "restore"
    family: str = "realtime"  # "realtime" or "live": which OpenAI API the profile speaks


@dataclass(frozen=True)
class Profiles:
    """Every profile by name, and the one each route uses when a request names none."""

    defaults: dict[str, str]  # flow -> profile name (a flow may have none)
    by_name: dict[str, Profile]

    def default_for(self, flow: str) -> str:
        """The route's default profile; a request naming none on a route without one is
        refused by name (`_profile`), as an unknown profile would be."""
        return self.defaults.get(flow, "")

    def reachable_secrets(self) -> list[str]:
        """Profiles that serve client secrets to a caller with no particular scope: their
        secrets open sessions no watcher sees, bounded by the mint quota only."""
        return [
            p.name
            for p in self.by_name.values()
            if "client_secrets" in p.flows and not p.required_scopes
        ]


# --- loading -----------------------------------------------------------------------------


def load_profiles(path: Path, problems: list[str]) -> Profiles:
    """Read and check the profiles file; append every problem found, naming the field."""
    where = f"PROFILES_FILE ({path})"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{where}: cannot be read as JSON: {exc}")
        return Profiles(defaults={}, by_name={})
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("profiles"), dict)
        or not raw["profiles"]
    ):
        problems.append(
            f"{where}: expected {{'default_profile': ..., 'profiles': {{name: {{...}}}}}}"
        )
        return Profiles(defaults={}, by_name={})
    by_name = {}
    for name, spec in raw["profiles"].items():
        profile = _load_profile(str(name), spec, problems)
        if profile:
            by_name[profile.name] = profile
    default = raw.get("default_profile", next(iter(raw["profiles"])))
    defaults = _defaults(default, by_name, where, problems)
    return Profiles(defaults=defaults, by_name=by_name)


def _defaults(
    raw: Any, by_name: dict[str, Profile], where: str, problems: list[str]
) -> dict[str, str]:
    """`default_profile`: one name (each route that profile serves uses it) or an object
    naming one per route (`{"calls": ..., "client_secrets": ...}`)."""
    if isinstance(raw, str):
        # Both routes use it; on the one it does not serve, a request naming no profile is
        # told which route it does serve (wrong-flow), as for any profile.
        if raw not in by_name:
            problems.append(f"{where}: default_profile {raw!r} is not a profile")
        return dict.fromkeys(FLOWS, raw)
    if not isinstance(raw, dict) or not set(raw) <= set(FLOWS):
        problems.append(f"{where}: default_profile must be a profile name or {{route: name}}")
        return {}
    for flow, name in raw.items():
        profile = by_name.get(name) if isinstance(name, str) else None
        if profile is None:
            problems.append(f"{where}: default_profile {name!r} is not a profile")
        elif flow not in profile.flows:
            problems.append(f"{where}: default_profile {name!r} does not serve {flow}")
    return {flow: str(name) for flow, name in raw.items()}


def _load_profile(name: str, spec: Any, problems: list[str]) -> Profile | None:
    before = len(problems)

    def bad(field: str, expected: str) -> None:
        problems.append(f"profile '{name}': '{field}' {expected}")

    if not isinstance(spec, dict):
        bad("", "must be an object")
        return None
    for key in spec:
        if key not in PROFILE_FIELDS:
            bad(key, f"is not a profile field (known: {', '.join(sorted(PROFILE_FIELDS))})")
    family = spec.get("api", "realtime")
    if family not in FAMILIES:
        bad("api", f"must be one of {list(FAMILIES)}")
    live = family == "live"
    if live:
        for key in REALTIME_ONLY_FIELDS & set(spec):
            bad(key, "is for client secrets: a Live profile has none")
    models: Any = spec.get("models")
    if not _strings(models):
        bad("models", "must be a non-empty list of model names")
    voices = spec.get("voices", ["marin"])
    allowed_voices = LIVE_VOICES if live else VOICES
    if not _strings(voices) or not set(voices) <= allowed_voices:
        bad("voices", f"must be a non-empty list drawn from {sorted(allowed_voices)}")
    instructions: Any = spec.get("instructions")
    if not isinstance(instructions, str) or not instructions.strip():
        bad("instructions", "must be a non-empty string")
    lifetime: Any = spec.get("expires_after_seconds", 60)
    maximum: Any = spec.get("max_expires_after_seconds", lifetime)
    for field, value in (
        ("expires_after_seconds", lifetime),
        ("max_expires_after_seconds", maximum),
    ):
        if not is_int(value) or not MIN_LIFETIME <= value <= MAX_LIFETIME:
            bad(field, f"must be a whole number from {MIN_LIFETIME} to {MAX_LIFETIME}")
    if isinstance(lifetime, int) and isinstance(maximum, int) and lifetime > maximum:
        bad("expires_after_seconds", "must not exceed max_expires_after_seconds")
    session = spec.get("session", {})
    if live:
        _check_live_session(session, bad)
    else:
        _check_session(session, bad)
    scopes = spec.get("required_scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
        bad("required_scopes", "must be a list of scope names")
    expose = spec.get("expose_instructions", False)
    if not isinstance(expose, bool):
        bad("expose_instructions", "must be true or false")
    max_call: Any = spec.get("max_call_seconds", DEFAULT_MAX_CALL_SECONDS)
    if isinstance(max_call, bool) or not isinstance(max_call, int):
        max_call = -1
    if not 1 <= max_call <= MAX_CALL_SECONDS:
        bad("max_call_seconds", f"must be a whole number from 1 to {MAX_CALL_SECONDS}")
    # Server-owned calls unless the operator opts in: a client secret opens sessions no
    # watcher meters or ends, bounded only by the mint quota.
    family_flows = ("live",) if live else REALTIME_FLOWS
    flows: Any = spec.get("flows", ["live"] if live else list(DEFAULT_FLOWS))
    if not _strings(flows) or not set(flows) <= set(family_flows) or len(set(flows)) != len(flows):
        bad("flows", f"must be a non-empty list drawn from {list(family_flows)}")
    on_change = spec.get("on_session_change", "restore")
    if on_change not in SESSION_CHANGE_ACTIONS:
        bad("on_session_change", f"must be one of {list(SESSION_CHANGE_ACTIONS)}")
    if len(problems) > before:
        return None
    return Profile(
        name=name,
        models=tuple(models),
        instructions=instructions,
        voices=tuple(voices),
        expires_after_seconds=lifetime,
        max_expires_after_seconds=maximum,
        session=session,
        required_scopes=tuple(scopes),
        expose_instructions=expose,
        max_call_seconds=max_call,
        flows=tuple(f for f in FLOWS if f in flows),
        on_session_change=on_change,
        family=family,
    )


def _check_session(session: Any, bad: Any) -> None:
    if not isinstance(session, dict):
        bad("session", "must be an object")
        return
    for key in session:
        if key not in SESSION_FIELDS:
            bad(f"session.{key}", "is not a session field a profile may fix")
    audio = session.get("audio", {})
    if not isinstance(audio, dict) or not set(audio) <= {"input", "output"}:
        bad("session.audio", "must be an object with 'input' and/or 'output'")
        return
    for part, allowed in (("input", AUDIO_INPUT_FIELDS), ("output", AUDIO_OUTPUT_FIELDS)):
        section = audio.get(part, {})
        if not isinstance(section, dict):
            bad(f"session.audio.{part}", "must be an object")
            continue
        for key in section:
            if key not in allowed:
                bad(f"session.audio.{part}.{key}", "is not allowed (the voice is set by 'voices')")


def _check_live_session(session: Any, bad: Any) -> None:
    """The Live session fields a profile may fix; OpenAI checks their insides (a bad value
    fails the create, a 502 naming nothing to the caller: test a Live profile once)."""
    if not isinstance(session, dict):
        bad("session", "must be an object")
        return
    for key in session:
        if key not in LIVE_SESSION_FIELDS:
            bad(f"session.{key}", f"is not a Live session field a profile may fix "
                f"(known: {', '.join(sorted(LIVE_SESSION_FIELDS))})")  # fmt: skip
    channel = session.get("client", {})
    if not isinstance(channel, dict) or not set(channel) <= {"data_channel"}:
        bad("session.client", "must be an object with 'data_channel'")
        return
    permissions = channel.get("data_channel", {})
    if not isinstance(permissions, dict) or not set(permissions) <= {
        "allowed_client_events", "allowed_server_events",
    }:  # fmt: skip
        bad("session.client.data_channel", "may set allowed_client_events, allowed_server_events")
        return
    events = permissions.get("allowed_client_events", [])
    if events != "all" and not (
        isinstance(events, list) and all(isinstance(e, str) for e in events)
    ):
        bad("session.client.data_channel.allowed_client_events", "must be 'all' or a list")
    if "store" in session and not isinstance(session["store"], bool):
        bad("session.store", "must be true or false")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
