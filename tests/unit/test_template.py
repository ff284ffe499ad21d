"""The stack's security-relevant properties, read from template.yaml itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.devstack.template import load_template

T = load_template()
R = T["Resources"]
EVENTS = Path(__file__).resolve().parents[2] / "events"


def props(name: str) -> dict[str, Any]:
    return R[name]["Properties"]


def test_the_function_runs_python313_on_arm64_within_10_seconds_with_snapstart() -> None:
    function = props("TokenFunction")
    runtime = function.get("Runtime") or T["Globals"]["Function"]["Runtime"]
    architectures = function.get("Architectures") or T["Globals"]["Function"]["Architectures"]

    assert runtime == "python3.13" and architectures == ["arm64"]
    assert function["Timeout"] <= 10 and function["Handler"] == "app.handler"
    assert (
        function["SnapStart"] == {"ApplyOn": "PublishedVersions"} and function["AutoPublishAlias"]
    )


def test_the_function_may_touch_exactly_its_table_and_its_secret() -> None:
    statements = [s for policy in props("TokenFunction")["Policies"] for s in policy["Statement"]]

    grants = {(s["Action"], json.dumps(s["Resource"], sort_keys=True)) for s in statements}
    assert grants == {
        ("dynamodb:UpdateItem", json.dumps({"Fn::GetAtt": ["QuotaTable", "Arn"]})),
        ("secretsmanager:GetSecretValue", json.dumps({"Ref": "OpenAIKeySecret"})),
    }
    assert all(s["Effect"] == "Allow" and "*" not in json.dumps(s["Resource"]) for s in statements)


def test_cors_allows_no_wildcard_no_credentials_and_exposes_the_rate_limit_headers() -> None:
    cors = props("HttpApi")["CorsConfiguration"]

    assert "*" not in json.dumps(cors["AllowOrigins"])
    assert cors["AllowCredentials"] is False and cors["AllowMethods"] == ["POST"]
    assert set(cors["ExposeHeaders"]) == {"retry-after", "ratelimit", "ratelimit-policy"}


def test_the_quota_table_is_keyed_by_pk_with_ttl_on_demand() -> None:
    table = props("QuotaTable")

    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"


def test_the_page_bucket_is_private_encrypted_and_tls_only() -> None:
    bucket = props("WebBucket")
    statements = props("WebBucketPolicy")["PolicyDocument"]["Statement"]

    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    readers = [s for s in statements if s["Effect"] == "Allow"]
    assert [s["Principal"] for s in readers] == [{"Service": "cloudfront.amazonaws.com"}]
    assert "AWS:SourceArn" in readers[0]["Condition"]["StringEquals"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
        for s in statements
    )


def test_cloudfront_serves_the_page_over_https_only_with_security_headers() -> None:
    config = props("WebDistribution")["DistributionConfig"]
    headers = props("WebHeadersPolicy")["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]

    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert config["Origins"][0]["OriginAccessControlId"] == {
        "Fn::GetAtt": ["WebOriginAccessControl", "Id"]
    }
    csp = json.dumps(headers["ContentSecurityPolicy"])
    assert "frame-ancestors 'none'" in csp and "connect-src 'self'" in csp
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert headers["FrameOptions"]["FrameOption"] == "DENY"


def test_cognito_exists_only_when_no_issuer_is_given() -> None:
    assert T["Conditions"]["CreateCognito"] == {"Fn::Equals": [{"Ref": "AuthIssuer"}, ""]}
    for name in ("UserPool", "UserPoolClient", "UserPoolDomain"):
        assert R[name]["Condition"] == "CreateCognito"
    client = props("UserPoolClient")
    assert client["GenerateSecret"] is False and client["AllowedOAuthFlows"] == ["code"]
    env = props("TokenFunction")["Environment"]["Variables"]
    assert env["AUTH_TOKEN_USE"] == {"Fn::If": ["CreateCognito", "access", {"Ref": "AuthTokenUse"}]}


def test_alarms_cover_errors_throttles_upstream_failures_and_the_mint_rate() -> None:
    alarms = {name for name, r in R.items() if r["Type"] == "AWS::CloudWatch::Alarm"}

    assert alarms == {"MintErrorsAlarm", "ThrottlesAlarm", "UpstreamFailuresAlarm", "MintRateAlarm"}
    assert R["Dashboard"]["Type"] == "AWS::CloudWatch::Dashboard"
    assert props("TokenFunctionLogGroup")["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_function_cors_constants_match_the_template(app_module: Any) -> None:
    cors = props("HttpApi")["CorsConfiguration"]

    assert tuple(cors["AllowMethods"]) == app_module.CORS_ALLOW_METHODS
    assert tuple(cors["AllowHeaders"]) == app_module.CORS_ALLOW_HEADERS
    assert tuple(cors["ExposeHeaders"]) == app_module.CORS_EXPOSE_HEADERS
    assert cors["MaxAge"] == app_module.CORS_MAX_AGE


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda p: p.name)
def test_the_events_are_payload_2_0(path: Path) -> None:
    event = json.loads(path.read_text())
    if path.name == "env.json":
        assert "TokenFunction" in event
        return
    assert event["version"] == "2.0" and event["rawPath"].startswith("/")
    assert {"http", "requestId", "stage"} <= event["requestContext"].keys()
    assert all(k == k.lower() for k in event["headers"])
