"""Battery 4: whatever happens, the logs never hold the OpenAI key, the caller's JWT, or a
client secret — with the function, botocore and httpx all at DEBUG."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.conftest import ORIGIN, http_event, invoke
from tests.fakes import OPENAI_KEY, FakeInternet, Issuer
from tests.security.test_faults import OPENAI_FAULTS
from tests.security.test_jwt_attacks import CASES


@pytest.fixture
def everything_at_debug(logs: Any) -> Any:
    logs.debug()
    for name in ("botocore", "boto3", "urllib3", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG)  # the function must quiet them itself
    return logs


def assert_clean(text: str, tokens: list[str], internet: FakeInternet) -> None:
    assert text, "nothing was logged: the capture is broken"
    assert OPENAI_KEY not in text
    assert "ek_" not in text
    for token in filter(None, (t.strip() for t in tokens)):
        assert token not in text
        if token.count(".") == 2 and len(token.split(".")[2]) > 16:
            assert token.split(".")[2] not in text  # not even the signature
    for value in internet.minted:
        assert value not in text


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_jwt_attacks_leave_no_secret_in_the_logs(
    case: Any, handler: Any, issuer: Issuer, internet: FakeInternet, everything_at_debug: Any
) -> None:
    headers = {k: v for k, v in (case(issuer) | {"origin": ORIGIN}).items() if v is not None}
    valid = issuer.token()
    invoke(handler, http_event(headers=headers, body="{}"))
    invoke(handler, http_event(headers={"authorization": f"Bearer {valid}"}))  # and a success

    raw = headers.get("authorization") or ""
    tokens = [valid, raw, raw.split(" ", 1)[-1] if len(raw) > 12 else ""]
    assert_clean(everything_at_debug.text, tokens, internet)


@pytest.mark.parametrize(
    ("script", "status", "retry_after", "attempts"),
    OPENAI_FAULTS.values(),
    ids=OPENAI_FAULTS.keys(),
)
def test_upstream_faults_leave_no_secret_in_the_logs(
    script: Any,
    status: int,
    retry_after: bool,
    attempts: int,
    mint: Any,
    issuer: Issuer,
    internet: FakeInternet,
    everything_at_debug: Any,
) -> None:
    internet.openai_script = list(script)
    token = issuer.token()

    mint(token=token)

    assert_clean(everything_at_debug.text, [token], internet)


SCENARIOS = {
    "happy_path": lambda mint, aws: [mint() for _ in range(2)],
    "quota_exhausted": lambda mint, aws: [mint() for _ in range(5)],
    "disallowed_field": lambda mint, aws: mint({"session": {"instructions": "x"}}),
    "bad_json": lambda mint, aws: mint(raw="{"),
    "secret_missing": lambda mint, aws: (
        aws.secretsmanager.delete_secret(SecretId="openai-key", ForceDeleteWithoutRecovery=True),
        mint(),
    ),
}


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_requests_leave_no_secret_in_the_logs(
    scenario: Any,
    mint: Any,
    aws: Any,
    issuer: Issuer,
    internet: FakeInternet,
    everything_at_debug: Any,
) -> None:
    scenario(mint, aws)

    assert_clean(everything_at_debug.text, [], internet)
