"""Profiles: what session a minted secret may open, and what a caller may choose within it.

The server fixes everything (model, instructions, tools, limits). A caller may pick only a
profile, one of its models, one of its voices and a shorter lifetime. Any other field is
refused by name: nothing is dropped silently or passed through.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidRequest, ProfileNotPermitted, WrongFlow
from .parsing import is_int

FLOWS = ("calls", "client_secrets")
ROUTES = {"calls": "/v1/realtime/calls", "client_secrets": "/v1/realtime/client_secrets"}
DEFAULT_MAX_CALL_SECONDS = 600
MAX_CALL_SECONDS = 3600  # OpenAI ends every session at 60 minutes anyway
MIN_LIFETIME = 10
MAX_LIFETIME = 600  # a secret can open several sessions until it expires: keep it short
ECHO_LIMIT = 40  # characters of a caller's name quoted back (detail, logs)
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
    "models", "instructions", "voices", "expires_after_seconds", "max_expires_after_seconds",
    "session", "required_scopes", "expose_instructions", "max_call_seconds", "flows",
    "on_session_change",
}  # fmt: skip
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
    flows: tuple[str, ...] = FLOWS
    on_session_change: str = "restore"


@dataclass(frozen=True)
class Profiles:
    """Every profile by name, and the one used when a request names none."""

    default: str
    by_name: dict[str, Profile]


@dataclass(frozen=True)
class MintPlan:
    """What to ask OpenAI for, decided before any quota is spent."""

    profile: Profile
    model: str
    lifetime: int
    upstream_body: dict[str, Any]


@dataclass(frozen=True)
class CallPlan:
    """What to place upstream for a server-owned call, decided before any quota is spent."""

    profile: Profile
    model: str
    session: dict[str, Any]


def resolve(profiles: Profiles, body: dict[str, Any], scopes: frozenset[str]) -> MintPlan:
    """Check the caller's request against the profile it names; build the upstream request."""
    _only(body, {"profile", "session", "expires_after"}, "")
    profile = _profile(profiles, body.get("profile", profiles.default), scopes, "client_secrets")
    session_in = _object(body.get("session", {}), "session")
    model, session = _session(profile, session_in)

    lifetime = profile.expires_after_seconds
    if "expires_after" in body:
        expires = _object(body["expires_after"], "expires_after")
        _only(expires, {"anchor", "seconds"}, "expires_after.")
        if expires.get("anchor", "created_at") != "created_at":
            raise InvalidRequest("only 'created_at' is supported", "expires_after.anchor")
        if "seconds" in expires:
            lifetime = _lifetime(expires["seconds"], profile.max_expires_after_seconds)

    upstream = {"expires_after": {"anchor": "created_at", "seconds": lifetime}, "session": session}
    return MintPlan(profile=profile, model=model, lifetime=lifetime, upstream_body=upstream)


def resolve_call(
    profiles: Profiles, session_in: dict[str, Any], profile: str | None, scopes: frozenset[str]
) -> CallPlan:
    """The `session` part of a call (OpenAI's session object, plus our `profile` member) and
    the `profile` query parameter: the same caller choices as for a client secret."""
    chosen = session_in.get("profile", profile)
    if profile is not None and chosen != profile:
        raise InvalidRequest("the profile is given twice with different values", "profile")
    named = _profile(profiles, profiles.default if chosen is None else chosen, scopes, "calls")
    model, session = _session(named, {k: v for k, v in session_in.items() if k != "profile"})
    return CallPlan(profile=named, model=model, session=session)


def _profile(profiles: Profiles, name: Any, scopes: frozenset[str], flow: str) -> Profile:
    if not isinstance(name, str) or name not in profiles.by_name:
        shown = f"'{echo(name)}'" if isinstance(name, str) else f"(a JSON {type(name).__name__})"
        raise InvalidRequest(f"unknown profile {shown}", "profile")
    profile = profiles.by_name[name]
    missing = tuple(s for s in profile.required_scopes if s not in scopes)
    if missing:
        raise ProfileNotPermitted(name, missing)
    if flow not in profile.flows:
        other = next(f for f in FLOWS if f != flow)
        raise WrongFlow(name, flow, ROUTES[other])
    return profile


def _session(profile: Profile, session_in: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    model, voice = profile.models[0], profile.voices[0]
    _only(session_in, {"type", "model", "audio"}, "session.")
    if session_in.get("type", "realtime") != "realtime":
        raise InvalidRequest("only realtime sessions can be minted here", "session.type")
    if "model" in session_in:
        model = _choice(session_in["model"], profile.models, "session.model")
    if "audio" in session_in:
        audio = _object(session_in["audio"], "session.audio")
        _only(audio, {"output"}, "session.audio.")
        output = _object(audio.get("output", {}), "session.audio.output")
        _only(output, {"voice"}, "session.audio.output.")
        if "voice" in output:
            voice = _choice(output["voice"], profile.voices, "session.audio.output.voice")
    session = copy.deepcopy(profile.session)
    session.update(type="realtime", model=model, instructions=profile.instructions)
    session.setdefault("audio", {}).setdefault("output", {})["voice"] = voice
    return model, session


def echo(name: str) -> str:
    """A name the caller sent, as far as a message or a log may quote it: the first
    ECHO_LIMIT characters, unprintable ones replaced. A refused request spends no quota, so
    a whole 16 KB name echoed into `detail` and the logs would be free amplification."""
    shown = "".join(c if c.isprintable() else "?" for c in name[:ECHO_LIMIT])
    return shown + ("..." if len(name) > ECHO_LIMIT else "")


def _only(obj: dict[str, Any], allowed: set[str], prefix: str) -> None:
    for key in obj:
        if key not in allowed:
            field = f"{prefix}{echo(key)}"
            raise InvalidRequest(f"the field '{field}' is not allowed here", field)


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{field}' must be an object", field)
    return value


def _choice(value: Any, allowed: tuple[str, ...], field: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidRequest(f"'{field}' must be one of: {', '.join(allowed)}", field)
    return value


def _lifetime(value: Any, maximum: int) -> int:
    if not is_int(value) or not MIN_LIFETIME <= value <= maximum:
        raise InvalidRequest(
            f"'expires_after.seconds' must be a whole number from {MIN_LIFETIME} to {maximum}",
            "expires_after.seconds",
        )
    return value


# --- loading -----------------------------------------------------------------------------


def load_profiles(path: Path, problems: list[str]) -> Profiles:
    """Read and check the profiles file; append every problem found, naming the field."""
    where = f"PROFILES_FILE ({path})"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{where}: cannot be read as JSON: {exc}")
        return Profiles(default="", by_name={})
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("profiles"), dict)
        or not raw["profiles"]
    ):
        problems.append(
            f"{where}: expected {{'default_profile': ..., 'profiles': {{name: {{...}}}}}}"
        )
        return Profiles(default="", by_name={})
    by_name = {}
    for name, spec in raw["profiles"].items():
        profile = _load_profile(str(name), spec, problems)
        if profile:
            by_name[profile.name] = profile
    default = raw.get("default_profile", next(iter(raw["profiles"])))
    if default not in raw["profiles"]:
        problems.append(f"{where}: default_profile {default!r} is not a profile")
    return Profiles(default=str(default), by_name=by_name)


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
    models: Any = spec.get("models")
    if not _strings(models):
        bad("models", "must be a non-empty list of model names")
    voices = spec.get("voices", ["marin"])
    if not _strings(voices) or not set(voices) <= VOICES:
        bad("voices", f"must be a non-empty list drawn from {sorted(VOICES)}")
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
    flows: Any = spec.get("flows", list(FLOWS))
    if not _strings(flows) or not set(flows) <= set(FLOWS) or len(set(flows)) != len(flows):
        bad("flows", f"must be a non-empty list drawn from {list(FLOWS)}")
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


def _strings(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
