"""The API's one public door in template.yaml: the page's distribution sends a generated
secret with every request it forwards to the API, the token function (and only it) reads the
secret and refuses what lacks it, WAF can be enabled only with that door, and the stack
without a distribution in front (ApiDoor=execute-api) is a declared configuration."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from token_vendor.api import door
from token_vendor.api.settings import DEFAULT_ROUTE_QUOTAS

from devstack.cloudfront import Deployment, Evaluator, SecretReference, origin_headers
from devstack.template import load_template
from tests.support.env import DOOR_PLACEHOLDER, EVENTS

T = load_template()
R = T["Resources"]
P = T["Parameters"]
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:OriginVerifySecret-AbCdEf"


def evaluated(node: Any, **parameters: str) -> Any:
    resources = {"OriginVerifySecret": SECRET_ARN, "OpenAIKeySecret": "openai-arn"}
    return Evaluator(T, Deployment(parameters=parameters, resources=resources)).evaluate(node)


def sent_to_the_api(**parameters: str) -> dict[str, str]:
    """What the distribution adds to each request it forwards to the API, each secret
    reference shown as what it asks Secrets Manager for."""
    deployment = Deployment(parameters=parameters, resources={"OriginVerifySecret": SECRET_ARN})

    def shown(reference: SecretReference) -> str:
        return json.dumps(vars(reference), sort_keys=True)

    return origin_headers(deployment, shown, T)


def test_the_distribution_is_the_door_by_default() -> None:
    assert P["ApiDoor"]["Default"] == "cloudfront"
    assert set(P["ApiDoor"]["AllowedValues"]) == {"cloudfront", "execute-api"}


def test_the_distribution_sends_the_current_secret_to_the_api_and_only_to_it() -> None:
    (header,) = sent_to_the_api().items()

    assert header[0] == door.HEADER
    assert json.loads(header[1]) == {
        "secret_id": SECRET_ARN, "json_key": "", "version_stage": "", "version_id": "",
    }  # fmt: skip
    web = next(o for o in R["WebDistribution"]["Properties"]["DistributionConfig"]["Origins"]
               if o["Id"] == "web")  # fmt: skip
    assert "OriginCustomHeaders" not in web  # the page's bucket is never told it


def test_a_rotation_pins_the_version_the_distribution_sends() -> None:
    version = "0f3c2b1a-9e8d-4c7b-a6f5-e4d3c2b1a098"
    (value,) = sent_to_the_api(OriginSecretVersion=version).values()

    assert json.loads(value)["version_id"] == version
    pattern = P["OriginSecretVersion"]["AllowedPattern"]
    assert re.fullmatch(pattern, version) and re.fullmatch(pattern, "")
    assert not re.fullmatch(pattern, "AWSPREVIOUS}}{{x")


def test_without_the_distribution_as_door_nothing_is_sent_and_nothing_is_checked() -> None:
    assert sent_to_the_api(ApiDoor="execute-api") == {}
    env = R["TokenFunction"]["Properties"]["Environment"]["Variables"]
    assert evaluated(env["ORIGIN_SECRET_ID"], ApiDoor="execute-api") == ""
    assert evaluated(env["ORIGIN_SECRET_ID"]) == SECRET_ARN


def test_the_secret_is_generated_long_and_header_safe_and_exists_only_with_the_door() -> None:
    secret = R["OriginVerifySecret"]
    rules = secret["Properties"]["GenerateSecretString"]

    assert secret["Condition"] == "BehindCloudFront"
    assert T["Conditions"]["BehindCloudFront"] == {"Fn::Equals": [{"Ref": "ApiDoor"}, "cloudfront"]}
    assert "SecretString" not in secret["Properties"]  # nobody types it, nobody knows it
    assert rules["PasswordLength"] >= 2 * door.MIN_LENGTH
    assert rules["ExcludePunctuation"] is True  # letters and digits: a header value as is
    assert set(rules) <= {"PasswordLength", "ExcludePunctuation"}  # no spaces, no template


def test_only_the_token_function_may_read_the_secret() -> None:
    readers = []
    for name, resource in R.items():
        if "OriginVerifySecret" in json.dumps(resource.get("Properties", {}).get("Policies", [])):
            readers.append(name)
    assert readers == ["TokenFunction"]
    assert "OriginVerifySecret" not in json.dumps(R["CallWatcherFunction"])


def test_waf_can_be_enabled_only_where_it_sees_every_request() -> None:
    rule = T["Rules"]["WafNeedsTheDoor"]

    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "EnableWaf"}, "true"]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "ApiDoor"}, "cloudfront"]}


def test_the_list_and_hangup_limits_are_a_parameter_with_the_functions_default() -> None:
    env = R["TokenFunction"]["Properties"]["Environment"]["Variables"]
    parameter = P["CallRouteQuotas"]

    assert env["CALL_ROUTE_QUOTAS"] == {"Ref": "CallRouteQuotas"}
    assert parameter["Default"] == DEFAULT_ROUTE_QUOTAS
    assert parameter["AllowedPattern"] == P["Quotas"]["AllowedPattern"]
    assert re.fullmatch(parameter["AllowedPattern"], parameter["Default"])


@pytest.mark.parametrize("path", sorted(p for p in EVENTS.glob("*.json") if p.name != "env.json"))
def test_each_event_is_what_the_distribution_forwards(path: Any) -> None:
    headers = json.loads(path.read_text())["headers"]

    assert headers[door.HEADER] == DOOR_PLACEHOLDER
    assert headers["via"].endswith("(CloudFront)") and headers["x-amz-cf-id"]
