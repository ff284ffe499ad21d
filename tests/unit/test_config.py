"""Configuration: parsed once, every problem named at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from token_vendor.api.settings import ApiSettings
from token_vendor.core.errors import ConfigError

from tests.support.env import BASE_ENV


def problems_for(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        ApiSettings.from_env(env)
    return caught.value.problems


def test_a_complete_environment_gives_settings() -> None:
    settings = ApiSettings.from_env(BASE_ENV)

    assert [(w.name, w.seconds, w.limit) for w in settings.quotas] == [
        ("minute", 60, 3),
        ("day", 86400, 10),
    ]
    assert settings.auth_algorithms == ("RS256",)
    assert settings.webrtc_url == "https://api.openai.test/v1/realtime/calls"
    assert settings.profiles.defaults == {
        "calls": "assistant",
        "client_secrets": "assistant-direct",
        "live": "live-assistant",
    }
    assert (
        settings.core.call_limits.concurrent == 2
        and settings.core.call_limits.seconds_per_day == 3600
    )
    assert settings.scheduler_precision_seconds == 60 and settings.calls_problems() == []
    assistant = settings.profiles.by_name["assistant"]
    assert assistant.max_call_seconds == 600 and assistant.flows == ("calls",)
    direct = settings.profiles.by_name["assistant-direct"]
    assert direct.flows == ("client_secrets",)
    assert direct.required_scopes == ("realtime:client_secrets",)


def test_call_limits_default_to_two_calls_and_an_hour_a_day() -> None:
    env = {k: v for k, v in BASE_ENV.items() if k not in ("CALL_LIMITS", "SCHEDULE_GROUP")}
    settings = ApiSettings.from_env(env | {"CALL_LIMITS": "minutes/day=5"})

    assert (settings.core.call_limits.concurrent, settings.core.call_limits.seconds_per_day) == (
        2,
        300,
    )
    assert settings.calls_problems() == ["SCHEDULE_GROUP is required for server-owned calls"]


def test_a_call_shorter_than_two_scheduler_units_cannot_be_promised(tmp_path: Path) -> None:
    spec = {"models": ["m"], "instructions": "x", "max_call_seconds": 90}
    env = write(tmp_path, {"profiles": {"p": spec}})

    (problem,) = problems_for(env)
    assert problem.startswith("profile 'p': 'max_call_seconds' must be at least 120")
    # A local runner that fires to the second can promise short calls.
    assert ApiSettings.from_env(env | {"SCHEDULER_PRECISION_SECONDS": "1"})
    # A profile that serves only client secrets has no calls to end.
    spec["flows"] = ["client_secrets"]
    assert ApiSettings.from_env(write(tmp_path, {"profiles": {"p": spec}}))


def test_every_missing_variable_is_named_at_once() -> None:
    problems = problems_for({})

    text = " ".join(problems)
    for name in ("OPENAI_SECRET_ID", "QUOTA_TABLE", "AUTH_ISSUER", "AUTH_AUDIENCE"):
        assert name in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("QUOTAS", "10/fortnight"),
        ("QUOTAS", "0/minute"),
        ("QUOTAS", "10/minute,5/minute"),
        ("GLOBAL_QUOTAS", "lots"),
        ("GLOBAL_QUOTAS", "0/day"),
        ("AUTH_ALGORITHMS", "HS256"),
        ("AUTH_ALGORITHMS", "none"),
        ("AUTH_ALGORITHMS", "RS256,ES256"),
        ("AUTH_ISSUER", "http://issuer.example.com/"),
        ("OPENAI_BASE_URL", "ftp://api.openai.com"),
        ("ALLOWED_ORIGINS", "*"),
        ("ALLOWED_ORIGINS", "https://app.example.com/path"),
        ("ALLOWED_ORIGINS", "null"),
        ("ALLOWED_ORIGINS", "http://app.example.com"),
        ("AUTH_LEEWAY_SECONDS", "-1"),
        ("CALL_LIMITS", "concurrent=0"),
        ("CALL_LIMITS", "concurrent=2,concurrent=3"),
        ("CALL_LIMITS", "calls=2"),
        ("CALL_LIMITS", "concurrent=11"),
        ("SCHEDULE_GROUP", "bad group!"),
        ("SCHEDULER_ROLE_ARN", "my-role"),
        ("SCHEDULER_PRECISION_SECONDS", "61"),
    ],
)
def test_a_bad_value_fails_naming_its_variable(name: str, value: str) -> None:
    problems = problems_for(BASE_ENV | {name: value})

    assert len(problems) == 1 and problems[0].startswith(name)


def test_plain_http_is_accepted_for_loopback_only() -> None:
    settings = ApiSettings.from_env(
        BASE_ENV
        | {"AUTH_ISSUER": "http://127.0.0.1:3002", "ALLOWED_ORIGINS": "http://localhost:5173"}
    )

    assert settings.allowed_origins == ("http://localhost:5173",)


def write(tmp_path: Path, document: object) -> dict[str, str]:
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps(document))
    return BASE_ENV | {"PROFILES_FILE": str(path)}


def test_a_bad_profile_fails_naming_the_profile_and_field(tmp_path: Path) -> None:
    env = write(
        tmp_path,
        {
            "profiles": {
                "p": {
                    "models": [],
                    "instructions": "x",
                    "voices": ["robot"],
                    "expires_after_seconds": 900,
                    "session": {"temperature": 0.7, "audio": {"output": {"voice": "marin"}}},
                    "colour": "blue",
                    "max_call_seconds": 7200,
                    "flows": ["calls", "sip"],
                }
            }
        },
    )

    problems = problems_for(env)

    text = "\n".join(problems)
    for field in (
        "'models'",
        "'voices'",
        "'expires_after_seconds'",
        "'session.temperature'",
        "'session.audio.output.voice'",
        "'colour'",
        "'max_call_seconds'",
        "'flows'",
    ):
        assert f"profile 'p': {field}" in text


def test_an_unreadable_profiles_file_is_named(tmp_path: Path) -> None:
    problems = problems_for(BASE_ENV | {"PROFILES_FILE": str(tmp_path / "missing.json")})

    assert problems[0].startswith("PROFILES_FILE")


def test_the_default_profile_must_exist(tmp_path: Path) -> None:
    env = write(
        tmp_path,
        {"default_profile": "nope", "profiles": {"p": {"models": ["m"], "instructions": "x"}}},
    )

    assert "default_profile 'nope' is not a profile" in problems_for(env)[0]


def test_the_global_quota_is_optional_and_parsed_like_the_per_user_one() -> None:
    assert ApiSettings.from_env(BASE_ENV).global_quotas == ()
    settings = ApiSettings.from_env(BASE_ENV | {"GLOBAL_QUOTAS": "100/minute, 1000/day"})

    assert [(w.name, w.limit) for w in settings.global_quotas] == [("minute", 100), ("day", 1000)]


def test_the_operators_controls_are_read_unless_turned_off_and_off_is_warned_of() -> None:
    """A block must hold wherever the function runs: off is an opt-out, said at cold start."""
    default = {k: v for k, v in BASE_ENV.items() if k != "USER_CONTROLS"}
    assert ApiSettings.from_env(default).user_controls is True
    assert not any("USER_CONTROLS" in w for w in ApiSettings.from_env(default).warnings())

    off = ApiSettings.from_env(default | {"USER_CONTROLS": "off"})
    assert off.user_controls is False
    assert any("USER_CONTROLS is off" in w for w in off.warnings())
