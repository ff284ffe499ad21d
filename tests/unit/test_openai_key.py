"""The OpenAI key: read lazily, cached, kept through a failed refresh, never in a repr."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber
from token_vendor.core.errors import DependencyUnavailable
from token_vendor.core.openai_key import OpenAIKeyStore, parse_secret

from tests.support.aws import Aws
from tests.support.clock import Clock
from tests.support.env import SECRET_ID
from tests.support.internet import OPENAI_KEY


def test_a_plain_key_and_a_json_secret_are_both_understood() -> None:
    assert parse_secret("sk-abc").api_key == "sk-abc"
    creds = parse_secret('{"api_key": "sk-abc", "organization": "org-1", "project": "proj-1"}')
    assert creds.headers() == {
        "Authorization": "Bearer sk-abc",
        "OpenAI-Organization": "org-1",
        "OpenAI-Project": "proj-1",
    }


@pytest.mark.parametrize(
    "raw",
    ["", "  ", "sk-a sk-b", " sk-a", "sk-a\n", "sk-a\u200b", "sk-\u00e9", "{", "[" * 10000,
     '{"key": "sk-a"}', "[]", '{"api_key": ""}', '{"api_key": "sk-a "}', '{"api_key": 5}',
     '{"api_key": "sk-a", "organization": "org\u200b"}', '{"api_key": "sk-a", "project": 1}'],
)  # fmt: skip
def test_an_unusable_secret_is_refused_without_quoting_it(raw: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_secret(raw)

    assert "sk-" not in str(caught.value)


def test_the_key_never_appears_in_a_repr() -> None:
    assert "sk-abc" not in repr(parse_secret("sk-abc"))


def test_the_secret_is_read_once_per_cache_period(aws: Aws) -> None:
    clock = Clock()
    store = OpenAIKeyStore(SECRET_ID, aws.secretsmanager, clock=clock)
    reads = []
    aws.secretsmanager.meta.events.register(
        "before-call.secrets-manager.GetSecretValue", lambda **kw: reads.append(1)
    )
    for _ in range(5):
        assert store.get().api_key == OPENAI_KEY
    clock.now += 301
    store.get()

    assert len(reads) == 2


def test_a_failed_refresh_keeps_serving_the_cached_key(aws: Aws) -> None:
    clock = Clock()
    store = OpenAIKeyStore(SECRET_ID, aws.secretsmanager, clock=clock)
    store.get()
    clock.now += 301
    stubber = Stubber(aws.secretsmanager)
    stubber.add_client_error("get_secret_value", "InternalServiceError", http_status_code=500)

    with stubber:
        assert store.get().api_key == OPENAI_KEY


def test_a_cold_container_without_the_secret_is_unavailable(aws: Aws) -> None:
    store = OpenAIKeyStore("no-such-secret", aws.secretsmanager)

    with pytest.raises(DependencyUnavailable) as caught:
        store.get()

    assert (
        caught.value.dependency == "openai_key"
        and "ResourceNotFoundException" in caught.value.reason
    )


def test_refresh_reads_a_rotated_key(aws: Aws) -> None:
    store = OpenAIKeyStore(SECRET_ID, aws.secretsmanager)
    store.get()
    aws.secretsmanager.put_secret_value(SecretId=SECRET_ID, SecretString="sk-rotated")

    assert store.get().api_key == OPENAI_KEY  # still cached
    assert store.refresh().api_key == "sk-rotated"
