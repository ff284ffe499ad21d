"""What a caller may choose within a profile: the server fixes everything else.

A caller may pick only a profile, one of its models, one of its voices and (for a client
secret) a shorter lifetime. Any other field is refused by name: nothing is dropped silently
or passed through.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ..core.echo import echo
from ..core.errors import InvalidRequest, ProfileNotPermitted, WrongFlow
from ..core.parsing import is_int
from .profiles import (
    LIVE_DEFAULT_CLIENT_EVENTS,
    MIN_LIFETIME,
    ROUTES,
    Profile,
    Profiles,
)


@dataclass(frozen=True)
class MintPlan:
    """What to ask OpenAI for, decided before any quota is spent."""

    profile: Profile
    model: str
    lifetime: int
    upstream_body: dict[str, Any]


@dataclass(frozen=True)
class CallPlan:
    """What to place upstream for a server-owned call or a Live session, decided before any
    quota is spent (`session`: what OpenAI is asked for, without the caller's pseudonym)."""

    profile: Profile
    model: str
    session: dict[str, Any]

    @property
    def family(self) -> str:
        return self.profile.family


def resolve(profiles: Profiles, body: dict[str, Any], scopes: frozenset[str]) -> MintPlan:
    """Check the caller's request against the profile it names; build the upstream request."""
    _only(body, {"profile", "session", "expires_after"}, "")
    name = body.get("profile", profiles.default_for("client_secrets"))
    profile = _profile(profiles, name, scopes, "client_secrets")
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
    named = _profile(
        profiles, profiles.default_for("calls") if chosen is None else chosen, scopes, "calls"
    )
    model, session = _session(named, {k: v for k, v in session_in.items() if k != "profile"})
    return CallPlan(profile=named, model=model, session=session)


def _profile(profiles: Profiles, name: Any, scopes: frozenset[str], flow: str) -> Profile:
    if name == "" and flow not in profiles.defaults:
        raise InvalidRequest(f"this service has no default profile for {ROUTES[flow]}", "profile")
    if not isinstance(name, str) or name not in profiles.by_name:
        shown = f"'{echo(name)}'" if isinstance(name, str) else f"(a JSON {type(name).__name__})"
        raise InvalidRequest(f"unknown profile {shown}", "profile")
    profile = profiles.by_name[name]
    missing = tuple(s for s in profile.required_scopes if s not in scopes)
    if missing:
        raise ProfileNotPermitted(name, missing)
    if flow not in profile.flows:
        raise WrongFlow(name, flow, ROUTES[profile.flows[0]])
    return profile


def resolve_live(
    profiles: Profiles, body: dict[str, Any], profile: str | None, scopes: frozenset[str]
) -> tuple[CallPlan, str]:
    """A Live create in OpenAI's own shape, `{session, transport: {type: "webrtc", sdp}}`:
    the caller may choose the model and the voice within the profile (and name the profile,
    in `session.profile` or the `profile` query parameter). The plan, and the SDP offer."""
    _only(body, {"session", "transport"}, "")
    transport = _object(body.get("transport"), "transport")
    _only(transport, {"type", "sdp"}, "transport.")
    if transport.get("type") != "webrtc":
        raise InvalidRequest("'transport.type' must be 'webrtc'", "transport.type")
    sdp = transport.get("sdp")
    if not isinstance(sdp, str):
        raise InvalidRequest("'transport.sdp' must be the SDP offer, as a string", "transport.sdp")
    session_in = _object(body.get("session", {}), "session")
    chosen = session_in.get("profile", profile)
    if profile is not None and chosen != profile:
        raise InvalidRequest("the profile is given twice with different values", "profile")
    named = _profile(
        profiles, profiles.default_for("live") if chosen is None else chosen, scopes, "live"
    )
    asked = {k: v for k, v in session_in.items() if k != "profile"}
    _only(asked, {"model", "audio"}, "session.")
    model, voice = _model_and_voice(named, asked)
    session = copy.deepcopy(named.session)
    session.update(model=model, instructions=named.instructions, store=session.get("store", False))
    session["audio"] = {"output": {"voice": voice}}
    channel = session.setdefault("client", {}).setdefault("data_channel", {})
    channel.setdefault("allowed_client_events", list(LIVE_DEFAULT_CLIENT_EVENTS))
    return CallPlan(profile=named, model=model, session=session), sdp


def _model_and_voice(profile: Profile, session_in: dict[str, Any]) -> tuple[str, str]:
    model, voice = profile.models[0], profile.voices[0]
    if "model" in session_in:
        model = _choice(session_in["model"], profile.models, "session.model")
    if "audio" in session_in:
        audio = _object(session_in["audio"], "session.audio")
        _only(audio, {"output"}, "session.audio.")
        output = _object(audio.get("output", {}), "session.audio.output")
        _only(output, {"voice"}, "session.audio.output.")
        if "voice" in output:
            voice = _choice(output["voice"], profile.voices, "session.audio.output.voice")
    return model, voice


def _session(profile: Profile, session_in: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    _only(session_in, {"type", "model", "audio"}, "session.")
    if session_in.get("type", "realtime") != "realtime":
        raise InvalidRequest("only realtime sessions can be minted here", "session.type")
    model, voice = _model_and_voice(profile, session_in)
    session = copy.deepcopy(profile.session)
    session.update(type="realtime", model=model, instructions=profile.instructions)
    session.setdefault("audio", {}).setdefault("output", {})["voice"] = voice
    return model, session


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
