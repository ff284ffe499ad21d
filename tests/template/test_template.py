"""The stack's security-relevant properties, read from template.yaml itself, and the helpers
(devstack/template.py) through which the local stack and the tests reuse its definitions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from token_vendor.api import http

from devstack.cloudfront import Deployment, Evaluator
from devstack.template import (
    TEMPLATE,
    cors_configuration,
    load_template,
    quota_table_definition,
)
from tests.support.aws import in_process_aws, use_fake_aws
from tests.support.env import EVENTS, FUNCTION_DIR

T = load_template()
R = T["Resources"]
EVENT_FILES = sorted(p for p in EVENTS.glob("*.json") if p.name != "env.json")
PLACEHOLDER = "Bearer REPLACE_WITH_A_TOKEN_FROM_make_token"
ORIGIN = "https://app.example.com"
# The function's contract: every variable it reads, all set by the template.
CONTRACT_VARIABLES = {
    "OPENAI_SECRET_ID",
    "OPENAI_BASE_URL",
    "QUOTA_TABLE",
    "QUOTAS",
    "GLOBAL_QUOTAS",
    "CALL_LIMITS",
    "SPEND_LIMITS",
    "UNWATCHED_CALLS",
    "WATCHER_ATTACH_SECONDS",
    "WATCHER_ANSWER_WAIT_SECONDS",
    "HANGUP_FAILURES_QUEUE_ARN",
    "WATCHER_FUNCTION_NAME",
    "SCHEDULE_GROUP",
    "SCHEDULER_ROLE_ARN",
    "AUTH_ISSUER",
    "AUTH_AUDIENCE",
    "AUTH_JWKS_URL",
    "AUTH_ALGORITHMS",
    "AUTH_REQUIRED_SCOPES",
    "AUTH_TOKEN_USE",
    "AUTH_REQUIRED_TYP",
    "ALLOWED_ORIGINS",
    "CALL_ROUTE_QUOTAS",
    "ORIGIN_SECRET_ID",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
}
NO_VALUE = {"Ref": "AWS::NoValue"}


def deployed_outputs(parameters: dict[str, str]) -> dict[str, str]:
    """Every output the stack would show, its resources standing in by name."""
    resources: dict[str, str] = {name: f"{name}-arn" for name in R} | {
        "HttpApi": "abc123",
        "WebDistribution": "E1ABC",
        "WebDistribution.DomainName": "d111.cloudfront.net",
        "UserPool.ProviderURL": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc",
        "UserPoolDomain": "rtv-1234",
    }
    evaluator = Evaluator(T, Deployment(parameters=parameters, resources=resources))
    return {
        name: str(evaluator.evaluate(output["Value"]))
        for name, output in T["Outputs"].items()
        if "Condition" not in output or evaluator.condition(output["Condition"])
    }


def props(name: str) -> dict[str, Any]:
    return R[name]["Properties"]


def function_setting(name: str) -> Any:
    return props("TokenFunction").get(name) or T["Globals"]["Function"][name]


# --- The function ----------------------------------------------------------------------------


def test_the_function_runs_python313_on_arm64_within_10_seconds_with_snapstart() -> None:
    function = props("TokenFunction")

    assert function_setting("Runtime") == "python3.13"
    assert function_setting("Architectures") == [{"Ref": "Architecture"}]
    # x86_64 is for `sam local` on x86_64 machines only; a deploy takes the default.
    architecture = T["Parameters"]["Architecture"]
    assert architecture["Default"] == "arm64" and set(architecture["AllowedValues"]) == {
        "arm64",
        "x86_64",
    }
    assert function["Timeout"] <= 10 and function["Handler"] == "token_vendor.api.app.handler"
    assert function["CodeUri"].rstrip("/") == "functions"
    assert (
        function["SnapStart"] == {"ApplyOn": "PublishedVersions"} and function["AutoPublishAlias"]
    )


HANGUP_ROLE_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${AWS::StackName}-hangup"
}
GROUP_SCHEDULES = {
    "Fn::Sub": "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}"
    ":schedule/${CallScheduleGroup}/*"
}


QUEUE_ARN = {"Fn::GetAtt": ["HangupFailuresQueue", "Arn"]}


def test_the_function_may_touch_exactly_its_table_secret_schedules_and_hangup_role() -> None:
    policies = props("TokenFunction")["Policies"]
    # No managed policy names or SAM policy templates: only statements we can read here.
    assert all(isinstance(p, dict) and set(p) == {"Statement"} for p in policies)
    statements = [s for policy in policies for s in policy["Statement"]]

    grants = {
        (action, json.dumps(s["Resource"], sort_keys=True))
        for s in statements
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert grants == {
        ("dynamodb:UpdateItem", json.dumps({"Fn::GetAtt": ["QuotaTable", "Arn"]})),
        ("dynamodb:GetItem", json.dumps({"Fn::GetAtt": ["QuotaTable", "Arn"]})),
        ("dynamodb:BatchGetItem", json.dumps({"Fn::GetAtt": ["QuotaTable", "Arn"]})),
        # The OpenAI key, and the door's secret while the distribution is the door.
        (
            "secretsmanager:GetSecretValue",
            json.dumps(
                [
                    {"Ref": "OpenAIKeySecret"},
                    {"Fn::If": ["BehindCloudFront", {"Ref": "OriginVerifySecret"}, NO_VALUE]},
                ]
            ),
        ),
        ("lambda:InvokeFunction", json.dumps({"Fn::GetAtt": ["CallWatcherFunction", "Arn"]})),
        ("scheduler:CreateSchedule", json.dumps(GROUP_SCHEDULES)),
        ("scheduler:DeleteSchedule", json.dumps(GROUP_SCHEDULES)),
        ("iam:PassRole", json.dumps(HANGUP_ROLE_ARN)),
        # Its on-failure destination, sent to with the function's own role.
        ("sqs:SendMessage", json.dumps(QUEUE_ARN)),
    }
    assert all(s["Effect"] == "Allow" for s in statements)
    # The only wildcard is the schedule name inside exactly the function's group.
    wildcards = [s["Resource"] for s in statements if "*" in json.dumps(s["Resource"])]
    assert wildcards == [GROUP_SCHEDULES]
    (pass_role,) = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}
    }
    assert all(set(s) <= {"Effect", "Action", "Resource", "Condition"} for s in statements)


def test_the_only_other_iam_is_the_role_scheduler_uses_to_invoke_exactly_this_function() -> None:
    """...and to put what it could not deliver in exactly the hangup failures queue."""
    iam = {name: r for name, r in R.items() if r["Type"].startswith("AWS::IAM::")}
    assert list(iam) == ["HangupSchedulerRole"] and "Role" not in props("TokenFunction")
    role = props("HangupSchedulerRole")

    # The function is told the role's ARN by name (a !GetAtt would be a dependency cycle).
    assert role["RoleName"] == {"Fn::Sub": "${AWS::StackName}-hangup"}
    env = props("TokenFunction")["Environment"]["Variables"]
    assert env["SCHEDULER_ROLE_ARN"] == HANGUP_ROLE_ARN
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    invoke, dead_letters = statements  # nothing else
    assert invoke["Action"] == "lambda:InvokeFunction"
    assert invoke["Resource"] == [
        {"Fn::GetAtt": ["TokenFunction", "Arn"]},
        {"Fn::Sub": "${TokenFunction.Arn}:*"},  # its versions and the `live` alias
    ]
    # A schedule's dead-letter queue is written with the schedule's role.
    assert dead_letters["Action"] == "sqs:SendMessage" and dead_letters["Resource"] == QUEUE_ARN
    assert all(
        s["Effect"] == "Allow" and set(s) == {"Effect", "Action", "Resource"} for s in statements
    )
    assert "ManagedPolicyArns" not in role


def test_hangups_live_in_their_own_schedule_group_and_retries_are_bounded() -> None:
    assert R["CallScheduleGroup"]["Type"] == "AWS::Scheduler::ScheduleGroup"
    env = props("TokenFunction")["Environment"]["Variables"]
    assert env["SCHEDULE_GROUP"] == {"Ref": "CallScheduleGroup"}
    assert env["CALL_LIMITS"] == {"Ref": "CallLimits"}
    assert T["Parameters"]["CallLimits"]["Default"] == "concurrent=2,minutes/day=60"
    assert props("TokenFunction")["EventInvokeConfig"] == {
        "MaximumRetryAttempts": 2,
        "MaximumEventAgeInSeconds": 900,
        # Not dropped after the retries: kept for the operator (test_nothing_dropped.py).
        "DestinationConfig": {"OnFailure": {"Type": "SQS", "Destination": QUEUE_ARN}},
    }


def test_the_function_gets_every_contract_variable() -> None:
    env = props("TokenFunction")["Environment"]["Variables"]

    assert set(env) >= CONTRACT_VARIABLES
    assert env["OPENAI_SECRET_ID"] == {"Ref": "OpenAIKeySecret"}
    assert env["QUOTA_TABLE"] == {"Ref": "QuotaTable"}
    assert env["QUOTAS"] == {"Ref": "Quotas"}
    assert env["OPENAI_BASE_URL"] == {"Ref": "OpenAIBaseUrl"}
    assert env["AUTH_ALGORITHMS"] == {"Ref": "AuthAlgorithms"}
    assert env["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}


def test_the_endpoint_override_is_empty_in_aws_and_only_there_for_sam_local() -> None:
    # SAM CLI drops every --env-vars entry the template does not declare, so the local stack's
    # endpoint needs a declared, empty variable (botocore ignores an empty AWS_ENDPOINT_URL).
    assert props("TokenFunction")["Environment"]["Variables"]["AWS_ENDPOINT_URL"] == ""


def test_concurrency_is_reserved_only_when_a_cap_is_given() -> None:
    assert props("TokenFunction")["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, NO_VALUE]
    }
    assert T["Conditions"]["HasReservedConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ReservedConcurrency"}, 0]}]
    }
    assert T["Parameters"]["ReservedConcurrency"]["Default"] == 0


def test_the_function_logs_json_to_its_own_log_group_with_retention() -> None:
    assert props("TokenFunction")["LoggingConfig"] == {
        "LogFormat": "JSON",
        "LogGroup": {"Ref": "TokenFunctionLogGroup"},
    }
    assert props("TokenFunctionLogGroup")["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_parameters_have_safe_defaults() -> None:
    parameters = T["Parameters"]

    assert parameters["AuthAlgorithms"]["Default"] == "RS256"
    assert parameters["Quotas"]["Default"] == "10/minute,100/day"
    assert parameters["OpenAIBaseUrl"]["Default"] == "https://api.openai.com/v1"
    assert 128 <= parameters["MemorySize"]["Default"] <= 3008
    assert parameters["LogLevel"]["Default"] == "INFO"
    assert "" in parameters["AuthTokenUse"]["AllowedValues"]


# --- The HTTP API ------------------------------------------------------------------------------


def test_the_function_is_reached_by_its_routes_only_and_checks_the_jwt_itself() -> None:
    routes = {n: r for n, r in R.items() if r["Type"] == "AWS::ApiGatewayV2::Route"}
    integrations = {n: r for n, r in R.items() if r["Type"] == "AWS::ApiGatewayV2::Integration"}

    assert {r["Properties"]["RouteKey"] for r in routes.values()} == {
        "POST /v1/realtime/client_secrets",
        "POST /v1/realtime/calls",
        "GET /v1/realtime/calls",
        "POST /v1/realtime/calls/{call_id}/hangup",
        "POST /v1/live/sessions",
        "POST /v1/live/sessions/{call_id}/hangup",
        "GET /openapi.json",
    }
    assert all(r["Properties"]["ApiId"] == {"Ref": "HttpApi"} for r in routes.values())
    assert all(
        r["Properties"]["Target"] == {"Fn::Sub": "integrations/${TokenIntegration}"}
        for r in routes.values()
    )
    assert list(integrations) == ["TokenIntegration"]
    integration = integrations["TokenIntegration"]["Properties"]
    # The SnapStart alias, never $LATEST; payload 2.0 as the handler parses it.
    alias = props("TokenFunction")["AutoPublishAlias"]
    assert integration["IntegrationUri"]["Fn::Sub"].endswith(
        f"/functions/${{TokenFunction.Arn}}:{alias}/invocations"
    )
    assert integration["PayloadFormatVersion"] == "2.0"
    permission = props("ApiInvokesFunction")
    assert permission["FunctionName"] == {"Ref": "TokenFunction.Alias"}
    assert permission["SourceArn"]["Fn::Sub"].endswith(":${HttpApi}/*")
    assert "Events" not in props("TokenFunction")  # an event would put the function in the API
    # No API Gateway authorizer: the function answers 401/403 as problem documents itself.
    assert all("AuthorizerId" not in r["Properties"] for r in routes.values())
    assert R["HttpApi"]["Type"] == "AWS::ApiGatewayV2::Api"
    assert props("HttpApi")["ProtocolType"] == "HTTP"
    stage = props("HttpApiStage")
    assert stage["StageName"] == "$default" and stage["AutoDeploy"] is True


def test_the_api_logs_each_request_with_its_source_ip_and_no_token_or_body() -> None:
    settings = props("HttpApiStage")["AccessLogSettings"]
    fields = json.loads(settings["Format"])

    assert settings["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert fields["ip"] == "$context.identity.sourceIp"
    assert {"requestId", "status", "path", "time"} <= set(fields)
    forbidden = ("authorization", "header", "body", "querystring", "jwt", "claims")
    assert not [v for v in fields.values() if any(f in v.lower() for f in forbidden)]
    assert props("ApiAccessLogGroup")["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_cors_allows_no_wildcard_no_credentials_and_exposes_the_rate_limit_headers() -> None:
    cors = props("HttpApi")["CorsConfiguration"]

    assert "*" not in json.dumps(cors["AllowOrigins"])
    assert cors["AllowCredentials"] is False and cors["AllowMethods"] == ["GET", "POST"]
    # authorization, content-type, and the headers OpenAI's browser SDKs send: named, no "*".
    assert cors["AllowHeaders"][:2] == ["authorization", "content-type"]
    assert all(
        h in ("x-openai-agents-sdk",) or h.startswith("x-stainless-")
        for h in cors["AllowHeaders"][2:]
    )
    assert set(cors["ExposeHeaders"]) == {
        "retry-after", "ratelimit", "ratelimit-policy", "location", "call-ends-at",
        "call-minutes-left",
    }  # fmt: skip
    assert 60 <= cors["MaxAge"] <= 86400  # minutes to hours


@pytest.mark.parametrize(
    ("origins", "accepted"),
    [
        ("", True),
        ("https://app.example.com", True),
        ("https://app.example.com,https://admin.example.com:8443", True),
        ("https://app.example.com,http://localhost:5173,http://127.0.0.1:3000", True),
        ("*", False),
        ("null", False),
        ("https://*.example.com", False),
        ("http://app.example.com", False),
        ("https://app.example.com/", False),
        ("https://app.example.com/path", False),
        ("https://app.example.com, https://admin.example.com", False),
        ("https://app.example.com,", False),
        ("app.example.com", False),
    ],
)
def test_the_allowed_origins_parameter_takes_exact_origins_only(
    origins: str, accepted: bool
) -> None:
    pattern = T["Parameters"]["AllowedOrigins"]["AllowedPattern"]

    assert bool(re.fullmatch(pattern, origins)) is accepted


def test_the_api_is_throttled_by_parameters() -> None:
    assert props("HttpApiStage")["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"},
    }


def test_the_function_cors_constants_match_the_template() -> None:
    cors = props("HttpApi")["CorsConfiguration"]

    assert tuple(cors["AllowMethods"]) == http.CORS_ALLOW_METHODS
    assert tuple(cors["AllowHeaders"]) == http.CORS_ALLOW_HEADERS
    assert tuple(cors["ExposeHeaders"]) == http.CORS_EXPOSE_HEADERS
    assert cors["MaxAge"] == http.CORS_MAX_AGE


# --- Data and secrets --------------------------------------------------------------------------


def test_the_quota_table_is_keyed_by_pk_with_ttl_on_demand_and_encrypted() -> None:
    table = props("QuotaTable")

    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert "GlobalSecondaryIndexes" not in table and "StreamSpecification" not in table


def test_the_secret_is_created_without_a_key_anyone_could_know() -> None:
    secret = props("OpenAIKeySecret")

    assert "GenerateSecretString" not in secret
    assert "sk-" not in secret.get("SecretString", "")
    assert json.loads(secret["SecretString"]) == {"api_key": ""}


def test_the_outputs_name_the_api_the_table_the_secret_and_the_function() -> None:
    outputs = T["Outputs"]

    assert {
        "ApiUrl",
        "ClientSecretsUrl",
        "CallsUrl",
        "QuotaTableName",
        "OpenAIKeySecretArn",
    } <= set(outputs)
    assert "FunctionName" in outputs
    assert outputs["OpenAIKeySecretArn"]["Value"] == {"Ref": "OpenAIKeySecret"}


@pytest.mark.parametrize(
    ("door", "base"),
    [
        ("cloudfront", "https://d111.cloudfront.net"),
        ("execute-api", "https://abc123.execute-api.us-east-1.amazonaws.com"),
    ],
)
def test_apps_are_told_the_door_and_no_output_names_the_api_behind_the_distribution(
    door: str, base: str
) -> None:
    """Mobile apps and other origins take ApiUrl: the page's own distribution, unless the
    stack is deployed without one in front of the API (ApiDoor=execute-api)."""
    outputs = deployed_outputs({"ApiDoor": door})

    assert outputs["ApiUrl"] == base
    assert outputs["ClientSecretsUrl"] == base + "/v1/realtime/client_secrets"
    assert outputs["CallsUrl"] == base + "/v1/realtime/calls"
    assert outputs["WebApiUrl"] == "https://d111.cloudfront.net"  # the page's, either way
    if door == "cloudfront":
        assert not [k for k, v in outputs.items() if "execute-api" in v]
        assert outputs["OriginSecretArn"] == "OriginVerifySecret-arn"
    else:
        assert "OriginSecretArn" not in outputs


# --- The rest of the stack ---------------------------------------------------------------------


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


def test_cloudfront_serves_the_api_under_the_pages_origin_uncached() -> None:
    config = props("WebDistribution")["DistributionConfig"]
    api = next(o for o in config["Origins"] if o["Id"] == "api")
    behaviours = {b["PathPattern"]: b for b in config["CacheBehaviors"]}

    assert api["DomainName"] == {
        "Fn::Sub": "${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
    }
    assert api["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert set(behaviours) == {"/v1/*", "/openapi.json"}
    for behaviour in behaviours.values():
        assert behaviour["TargetOriginId"] == "api"
        assert behaviour["ViewerProtocolPolicy"] == "https-only"  # a redirect would drop a POST
        assert (
            behaviour["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
        )  # CachingDisabled
        # AllViewerExceptHostHeader: API Gateway answers only to its own host name.
        assert behaviour["OriginRequestPolicyId"] == "b689b0a8-53d0-40ab-baf2-68738e2966ac"
        assert behaviour["ResponseHeadersPolicyId"] == {"Ref": "WebHeadersPolicy"}
    assert "POST" in behaviours["/v1/*"]["AllowedMethods"]
    # The page no longer needs CORS: only the extra origins are granted it, and the function
    # is told the same.
    assert props("HttpApi")["CorsConfiguration"]["AllowOrigins"] == {
        "Fn::If": ["HasExtraOrigins", {"Fn::Split": [",", {"Ref": "AllowedOrigins"}]}, []]
    }
    env = props("TokenFunction")["Environment"]["Variables"]
    assert env["ALLOWED_ORIGINS"] == {"Ref": "AllowedOrigins"}


def test_the_optional_web_acl_limits_each_ip_on_the_api_and_is_off_by_default() -> None:
    parameters = T["Parameters"]
    acl = R["WebAcl"]
    rate = next(r for r in acl["Properties"]["Rules"] if "RateBasedStatement" in r["Statement"])
    statement = rate["Statement"]["RateBasedStatement"]

    assert parameters["EnableWaf"]["Default"] == "false"
    assert "USD" in parameters["EnableWaf"]["Description"]  # its cost, where it is chosen
    assert acl["Condition"] == "WafEnabled" and acl["Properties"]["Scope"] == "CLOUDFRONT"
    assert statement["AggregateKeyType"] == "IP" and statement["Limit"] == {"Ref": "WafRateLimit"}
    assert statement["ScopeDownStatement"]["ByteMatchStatement"]["SearchString"] == "/v1/"
    assert rate["Action"] == {"Block": {}}
    assert props("WebDistribution")["DistributionConfig"]["WebACLId"] == {
        "Fn::If": ["WafEnabled", {"Fn::GetAtt": ["WebAcl", "Arn"]}, NO_VALUE]
    }
    # CloudFront's web ACLs exist only in us-east-1: the template says so before creating.
    assertion = T["Rules"]["WafNeedsUsEast1"]["Assertions"][0]["Assert"]
    assert assertion == {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}


def test_the_page_is_told_the_api_under_its_own_origin() -> None:
    outputs = T["Outputs"]

    assert outputs["WebApiUrl"]["Value"] == {"Fn::Sub": "https://${WebDistribution.DomainName}"}


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


def test_only_the_operator_creates_accounts_unless_self_sign_up_is_chosen() -> None:
    pool = props("UserPool")

    assert T["Parameters"]["SelfSignUp"]["Default"] == "false"
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] == {
        "Fn::If": ["SelfSignUpEnabled", False, True]
    }
    assert T["Conditions"]["SelfSignUpEnabled"] == {"Fn::Equals": [{"Ref": "SelfSignUp"}, "true"]}


def test_self_sign_up_requires_a_global_cap() -> None:
    rule = T["Rules"]["SelfSignUpNeedsGlobalQuotas"]

    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "SelfSignUp"}, "true"]}
    assert rule["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "GlobalQuotas"}, ""]}]
    }
    assert props("TokenFunction")["Environment"]["Variables"]["GLOBAL_QUOTAS"] == {
        "Ref": "GlobalQuotas"
    }
    pattern = T["Parameters"]["GlobalQuotas"]["AllowedPattern"]
    assert re.fullmatch(pattern, "") and re.fullmatch(pattern, "100/minute,2000/day")
    assert not re.fullmatch(pattern, "lots")


def test_access_tokens_live_ten_minutes_and_refresh_tokens_can_be_revoked() -> None:
    client = props("UserPoolClient")

    assert T["Parameters"]["AccessTokenMinutes"]["Default"] == 10
    assert (
        client["AccessTokenValidity"] == client["IdTokenValidity"] == {"Ref": "AccessTokenMinutes"}
    )
    assert client["TokenValidityUnits"]["AccessToken"] == "minutes"
    assert client["EnableTokenRevocation"] is True
    outputs = T["Outputs"]
    assert outputs["SignOutUrl"]["Value"]["Fn::Sub"].endswith(".amazoncognito.com/logout")
    assert outputs["RevocationUrl"]["Value"]["Fn::Sub"].endswith(".amazoncognito.com/oauth2/revoke")


def test_alarms_cover_errors_throttles_upstream_failures_the_unexpected_and_the_mint_rate() -> None:
    alarms = {name for name, r in R.items() if r["Type"] == "AWS::CloudWatch::Alarm"}

    assert alarms == {
        "MintErrorsAlarm",
        "ThrottlesAlarm",
        "UpstreamFailuresAlarm",
        "UnexpectedErrorsAlarm",
        "GlobalCapAlarm",
        "MintRateAlarm",
        "WatcherFailuresAlarm",
        # Nothing dropped silently (test_nothing_dropped.py): each with its metric.
        "HangupFailuresAlarm",
        "HangupsLostAlarm",
        "CallsUnwatchedAlarm",
        "WatchEventsRefusedAlarm",
        "WatcherStartFailuresAlarm",
        "WatcherThrottlesAlarm",
        "AsyncEventsDroppedAlarm",
    }
    assert R["Dashboard"]["Type"] == "AWS::CloudWatch::Dashboard"


# --- The call watcher ---------------------------------------------------------------------------

WATCHER_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}"
    ":function:${AWS::StackName}-call-watcher"
}


def test_the_watcher_runs_python313_on_arm64_for_at_most_900_seconds_in_little_memory() -> None:
    watcher = props("CallWatcherFunction")

    assert watcher.get("Runtime", T["Globals"]["Function"]["Runtime"]) == "python3.13"
    # The same architecture as the API's function: arm64 unless `sam local` needs x86_64.
    assert watcher.get("Architectures", T["Globals"]["Function"]["Architectures"]) == [
        {"Ref": "Architecture"}
    ]
    assert T["Parameters"]["Architecture"]["Default"] == "arm64"
    assert watcher["Handler"] == "token_vendor.watcher.app.handler"
    assert watcher["CodeUri"].rstrip("/") == "functions"  # the same package as the API's
    assert watcher["Timeout"] <= 900
    assert T["Parameters"]["WatcherMemorySize"]["Default"] <= 256
    assert watcher["MemorySize"] == {"Ref": "WatcherMemorySize"}
    # It hands over before Lambda's limit: its own limit and margin fit inside the timeout.
    env = watcher["Environment"]["Variables"]
    assert float(env["WATCHER_MAX_SECONDS"]) + float(env["WATCHER_MARGIN_SECONDS"]) <= 900
    assert float(env["WATCHER_HANDOVER_SECONDS"]) < float(env["WATCHER_MAX_SECONDS"])
    # The watcher reads exactly what WatcherSettings reads, all set here.
    assert {
        "OPENAI_SECRET_ID", "OPENAI_BASE_URL", "QUOTA_TABLE", "CALL_LIMITS", "SPEND_LIMITS",
    } <= set(env)  # fmt: skip
    assert env["SPEND_LIMITS"] == props("TokenFunction")["Environment"]["Variables"]["SPEND_LIMITS"]
    assert env["CALL_LIMITS"] == props("TokenFunction")["Environment"]["Variables"]["CALL_LIMITS"]


def test_the_watchers_concurrency_is_reserved_only_when_a_cap_is_given() -> None:
    assert props("CallWatcherFunction")["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasWatcherReservedConcurrency", {"Ref": "WatcherReservedConcurrency"}, NO_VALUE]
    }
    assert T["Conditions"]["HasWatcherReservedConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "WatcherReservedConcurrency"}, 0]}]
    }
    # Reserved by default: what live calls can never take from the token function.
    assert T["Parameters"]["WatcherReservedConcurrency"]["Default"] == 100


def test_the_watcher_is_never_retried_and_a_stale_start_is_dropped() -> None:
    config = props("CallWatcherFunction")["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 0
    assert 60 <= config["MaximumEventAgeInSeconds"] <= 120


def test_the_watcher_may_touch_exactly_the_table_the_key_and_itself() -> None:
    watcher = props("CallWatcherFunction")
    assert "Role" not in watcher
    statements = [s for policy in watcher["Policies"] for s in policy["Statement"]]
    grants = {
        (action, json.dumps(resource, sort_keys=True))
        for s in statements
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        for resource in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    }
    table = json.dumps({"Fn::GetAtt": ["QuotaTable", "Arn"]})
    # A hand-over invokes the ARN it was invoked by: unqualified, or one of its own versions
    # and aliases (`:*`), never another function.
    qualified = {"Fn::Sub": WATCHER_ARN["Fn::Sub"] + ":*"}
    assert grants == {
        ("dynamodb:UpdateItem", table),
        ("dynamodb:GetItem", table),
        ("dynamodb:BatchGetItem", table),
        ("secretsmanager:GetSecretValue", json.dumps({"Ref": "OpenAIKeySecret"})),
        ("lambda:InvokeFunction", json.dumps(WATCHER_ARN)),
        ("lambda:InvokeFunction", json.dumps(qualified)),
    }
    assert all(s["Effect"] == "Allow" for s in statements)
    assert "*" not in json.dumps([s["Resource"] for s in statements]).replace("-call-watcher:*", "")
    # The ARN it may invoke is its own: the name it is given.
    assert watcher["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-call-watcher"}
    # The token function starts it by that function's own reference.
    env = props("TokenFunction")["Environment"]["Variables"]
    assert env["WATCHER_FUNCTION_NAME"] == {"Ref": "CallWatcherFunction"}


def test_the_watchers_failures_are_alarmed_and_spend_is_on_the_dashboard() -> None:
    alarm = props("WatcherFailuresAlarm")
    metrics = {m["Id"]: m for m in alarm["Metrics"]}
    reported = metrics["reported"]["MetricStat"]["Metric"]
    assert reported["MetricName"] == "WatcherFailures"
    assert reported["Dimensions"] == [{"Name": "service", "Value": "call-watcher"}]
    crashed = metrics["crashed"]["MetricStat"]["Metric"]
    assert crashed["Namespace"] == "AWS/Lambda" and crashed["MetricName"] == "Errors"
    assert alarm["Threshold"] == 1
    body = props("Dashboard")["DashboardBody"]["Fn::Sub"][0]
    assert "SpendMicroUSD" in body and "3600) / 1000000" in body
    for metric in ("PolicyDeviations", "BudgetHangups", "Handovers", "WatcherFailures"):
        assert metric in body


def test_every_metric_on_the_dashboard_is_one_the_functions_emit() -> None:
    """A dashboard line for a metric nothing emits stays empty without a word: each metric
    of our namespace on it must be named by an emitting call in the package."""
    body = json.loads(props("Dashboard")["DashboardBody"]["Fn::Sub"][0])
    named: set[str] = set()
    for widget in body["widgets"]:
        namespace = ""
        for line in widget["properties"]["metrics"]:
            if isinstance(line[0], dict):  # a SEARCH expression names its metric inside
                named |= set(re.findall(r'MetricName="(\w+)"', line[0]["expression"]))
                continue
            if line[0] == "...":  # the previous line's metric again, another statistic
                continue
            namespace = namespace if line[0] == "." else line[0]
            if namespace == "RealtimeTokenVendor":
                named.add(line[1])
    code = "\n".join(p.read_text() for p in (FUNCTION_DIR / "token_vendor").rglob("*.py"))
    emitted = set(re.findall(r'(?:add_metric\(\s*name=|\.count\(\s*|metric=)"(\w+)"', code))
    assert {"CallsPlaced", "CallsEnded", "CallLimitRefusals", "SpendMicroUSD"} <= named
    assert named - emitted == set()


# --- events/ for `sam local invoke` ------------------------------------------------------------


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: p.name)
def test_the_events_are_complete_payload_2_0(path: Path) -> None:
    e = json.loads(path.read_text())
    context = e["requestContext"]
    http = context["http"]

    assert e["version"] == "2.0" and e["rawQueryString"] == ""
    assert e["routeKey"] == context["routeKey"] == f"{http['method']} {e['rawPath']}"
    assert e["rawPath"] == http["path"] and e["rawPath"].startswith("/")
    assert {"accountId", "apiId", "domainName", "requestId", "stage", "time"} <= context.keys()
    assert context["stage"] == "$default" and isinstance(context["timeEpoch"], int)
    assert context["domainName"] == e["headers"]["host"]
    assert context["domainName"].startswith(context["apiId"] + ".execute-api.")
    assert {"protocol", "sourceIp", "userAgent"} <= http.keys()
    assert http["userAgent"] == e["headers"]["user-agent"]
    assert all(k == k.lower() and isinstance(v, str) for k, v in e["headers"].items())
    assert e["isBase64Encoded"] is False
    assert e["body"] is None or isinstance(e["body"], str)


def test_the_events_hit_the_template_routes_or_the_preflight() -> None:
    from devstack.apigw import template_routes

    declared = set(template_routes(T))
    keys = {p.name: event(p.name)["routeKey"] for p in EVENT_FILES}

    assert keys == {
        "mint.json": "POST /v1/realtime/client_secrets",
        "missing-token.json": "POST /v1/realtime/client_secrets",
        "disallowed-field.json": "POST /v1/realtime/client_secrets",
        "preflight.json": "OPTIONS /v1/realtime/client_secrets",
        "openapi.json": "GET /openapi.json",
    }
    assert {k for k in keys.values() if not k.startswith("OPTIONS ")} <= declared


def test_the_post_events_carry_the_origin_and_a_token_placeholder_where_due() -> None:
    for name in ("mint.json", "disallowed-field.json", "missing-token.json"):
        headers = event(name)["headers"]
        assert headers["origin"] == ORIGIN and headers["content-type"] == "application/json"
    assert event("mint.json")["headers"]["authorization"] == PLACEHOLDER
    assert event("disallowed-field.json")["headers"]["authorization"] == PLACEHOLDER
    assert "authorization" not in event("missing-token.json")["headers"]


def test_the_event_bodies_ask_what_their_names_say() -> None:
    mint = json.loads(event("mint.json")["body"])
    refused = json.loads(event("disallowed-field.json")["body"])

    assert mint["session"]["type"] == "realtime" and "instructions" not in mint["session"]
    assert refused["session"]["instructions"]


def test_the_preflight_event_asks_for_what_cors_allows() -> None:
    headers = event("preflight.json")["headers"]
    cors = props("HttpApi")["CorsConfiguration"]

    assert headers["origin"] == ORIGIN and "authorization" not in headers
    assert headers["access-control-request-method"] in cors["AllowMethods"]
    # What the `openai` package's mint from a browser asks for: all of it allowed.
    requested = {h.strip() for h in headers["access-control-request-headers"].split(",")}
    assert {"authorization", "content-type", "x-stainless-lang"} <= requested
    assert requested <= set(cors["AllowHeaders"])


def test_the_env_file_sets_only_variables_the_template_declares() -> None:
    # `sam local --env-vars` silently drops any variable the template does not declare.
    env = event("env.json")
    declared = set(props("TokenFunction")["Environment"]["Variables"])

    assert set(env) == {"TokenFunction"}
    assert set(env["TokenFunction"]) <= declared
    assert all(isinstance(v, str) for v in env["TokenFunction"].values())
    assert env["TokenFunction"]["AWS_ENDPOINT_URL"].startswith("http://")


def test_the_env_file_places_calls_in_the_local_stacks_schedule_group_and_watcher() -> None:
    """`sam local` serves the page's default flow, server-owned calls, only with the local
    stack's schedule group, hangup role and watcher (whose Invoke API is not moto's)."""
    from devstack import stack

    env = event("env.json")["TokenFunction"]
    assert env["SCHEDULE_GROUP"] == stack.SCHEDULE_GROUP
    assert env["SCHEDULER_ROLE_ARN"] == stack.SCHEDULER_ROLE_ARN
    assert env["WATCHER_FUNCTION_NAME"] == stack.WATCHER_FUNCTION
    assert env["CALL_LIMITS"] == stack.DEFAULT_CALL_LIMITS
    watcher_port = stack.DEFAULT_PORTS["watcher"]
    assert env["AWS_ENDPOINT_URL_LAMBDA"] == f"http://127.0.0.1:{watcher_port}"
    for function in ("TokenFunction", "CallWatcherFunction"):
        variables = props(function)["Environment"]["Variables"]
        assert variables["AWS_ENDPOINT_URL"] == variables["AWS_ENDPOINT_URL_LAMBDA"] == ""


# --- devstack/template.py ----------------------------------------------------------------


def test_the_loader_reads_the_template_as_cfn_lint_does() -> None:
    from cfnlint.decode import decode

    decoded, problems = decode(str(TEMPLATE))

    assert problems == []
    assert json.loads(json.dumps(decoded)) == T


def test_the_loader_turns_short_tags_into_intrinsics(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "A: !Ref X\n"
        "B: !GetAtt Table.Arn\n"
        "C: !Sub 'https://${Api}.example.com'\n"
        "D: !If [Cond, !Ref Y, !Ref AWS::NoValue]\n"
        "E: !Split [',', !Ref Z]\n"
        "F: !GetAtt [Table, StreamArn]\n"
    )

    assert load_template(path) == {
        "A": {"Ref": "X"},
        "B": {"Fn::GetAtt": ["Table", "Arn"]},
        "C": {"Fn::Sub": "https://${Api}.example.com"},
        "D": {"Fn::If": ["Cond", {"Ref": "Y"}, NO_VALUE]},
        "E": {"Fn::Split": [",", {"Ref": "Z"}]},
        "F": {"Fn::GetAtt": ["Table", "StreamArn"]},
    }


def test_the_loader_says_which_file_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_template(tmp_path / "nope.yaml")


def test_the_quota_table_definition_is_the_template_table() -> None:
    assert quota_table_definition(T) == {
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
        "ttl_attribute": "ttl",
    }


def test_the_quota_table_definition_creates_a_working_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_fake_aws(monkeypatch)
    definition = quota_table_definition(T)
    ttl_attribute = definition.pop("ttl_attribute")

    with in_process_aws():
        dynamodb = botocore.session.get_session().create_client("dynamodb", "us-east-1")
        dynamodb.create_table(TableName="quota", **definition)
        dynamodb.update_time_to_live(
            TableName="quota",
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
        )
        # The function's kind of write: a conditional counter in one UpdateItem.
        dynamodb.update_item(
            TableName="quota",
            Key={"pk": {"S": "user#minute#1"}},
            UpdateExpression="ADD n :one SET #ttl = :ttl",
            ConditionExpression="attribute_not_exists(n) OR n < :limit",
            ExpressionAttributeNames={"#ttl": ttl_attribute},
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":limit": {"N": "10"},
                ":ttl": {"N": "1800000000"},
            },
        )
        ttl = dynamodb.describe_time_to_live(TableName="quota")["TimeToLiveDescription"]
        described = dynamodb.describe_table(TableName="quota")["Table"]

    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_the_quota_table_definition_omits_ttl_when_the_template_has_none() -> None:
    template = {
        "Resources": {
            "QuotaTable": {
                "Properties": {
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": False},
                }
            }
        }
    }

    definition = quota_table_definition(template)

    assert "ttl_attribute" not in definition
    assert definition["BillingMode"] == "PAY_PER_REQUEST"


def test_the_cors_configuration_is_the_template_rules() -> None:
    assert cors_configuration(T) == {
        "AllowHeaders": list(http.CORS_ALLOW_HEADERS),
        "ExposeHeaders": [
            "retry-after",
            "ratelimit",
            "ratelimit-policy",
            "location",
            "call-ends-at",
            "call-minutes-left",
        ],
        "AllowMethods": ["GET", "POST"],
        "MaxAge": 600,
        "AllowCredentials": False,
    }


def test_the_cors_configuration_normalises_names_and_defaults() -> None:
    template = {
        "Resources": {
            "HttpApi": {
                "Properties": {
                    "CorsConfiguration": {
                        "AllowOrigins": ["https://app.example.com"],
                        "AllowHeaders": ["Authorization", "Content-Type"],
                        "ExposeHeaders": ["Retry-After", "RateLimit", "RateLimit-Policy"],
                        "AllowMethods": ["post"],
                        "MaxAge": 60,
                    }
                }
            }
        }
    }

    assert cors_configuration(template) == {
        "AllowHeaders": ["authorization", "content-type"],
        "ExposeHeaders": ["retry-after", "ratelimit", "ratelimit-policy"],
        "AllowMethods": ["POST"],
        "MaxAge": 60,
        "AllowCredentials": False,
    }
