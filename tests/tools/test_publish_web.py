"""The publishing step of `make deploy`, against moto's S3, CloudFormation and CloudFront."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from deploy import publish_web
from tests.support.aws import in_process_aws, use_fake_aws

OUTPUTS = {
    "ApiUrl": "https://abc123.execute-api.us-east-1.amazonaws.com",
    "WebApiUrl": "https://d111.cloudfront.net",
    "AuthIssuerUrl": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC",
    "WebClientId": "client123",
    "WebUrl": "https://d111.cloudfront.net/",
    "WebBucketName": "web-bucket",
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    use_fake_aws(monkeypatch)
    with in_process_aws():
        session = boto3.session.Session(region_name="us-east-1")
        session.client("s3").create_bucket(Bucket="web-bucket")
        distribution = session.client("cloudfront").create_distribution(
            DistributionConfig={
                "CallerReference": "x",
                "Comment": "",
                "Enabled": True,
                "Origins": {
                    "Quantity": 1,
                    "Items": [
                        {
                            "Id": "web",
                            "DomainName": "web-bucket.s3.amazonaws.com",
                            "S3OriginConfig": {"OriginAccessIdentity": ""},
                        }
                    ],
                },
                "DefaultCacheBehavior": {
                    "TargetOriginId": "web",
                    "ViewerProtocolPolicy": "redirect-to-https",
                    "MinTTL": 0,
                    "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                    "TrustedSigners": {"Enabled": False, "Quantity": 0},
                },
            }
        )["Distribution"]
        outputs = OUTPUTS | {"WebDistributionId": distribution["Id"]}
        template = {
            "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {k: {"Value": v} for k, v in outputs.items()},
        }
        session.client("cloudformation").create_stack(
            StackName="rtv", TemplateBody=json.dumps(template)
        )
        yield session


@pytest.fixture
def web_dir(tmp_path: Path) -> Path:
    (tmp_path / "js").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>x</title>")
    (tmp_path / "styles.css").write_text("body{}")
    (tmp_path / "js" / "main.js").write_text("export {};")
    (tmp_path / "config.json").write_text(
        '{"apiBaseUrl": "http://127.0.0.1:3001"}'
    )  # a local one: not shipped
    return tmp_path


def objects(session: Any) -> dict[str, Any]:
    s3 = session.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="web-bucket").get("Contents", [])]
    return {k: s3.get_object(Bucket="web-bucket", Key=k) for k in keys}


def test_publishing_uploads_the_page_with_types_caching_and_a_generated_config(
    aws: Any, web_dir: Path, capsys: Any
) -> None:
    publish_web.main(["--stack-name", "rtv", "--web-dir", str(web_dir)], session=aws)

    stored = objects(aws)
    assert set(stored) == {"index.html", "styles.css", "js/main.js", "config.json"}
    assert stored["js/main.js"]["ContentType"] == "text/javascript"
    assert stored["styles.css"]["ContentType"] == "text/css"
    assert (
        stored["index.html"]["CacheControl"] == "no-cache"
        and stored["config.json"]["CacheControl"] == "no-cache"
    )
    assert stored["styles.css"]["CacheControl"] == "public, max-age=3600"
    config = json.loads(stored["config.json"]["Body"].read())
    assert config == {
        "apiBaseUrl": OUTPUTS["WebApiUrl"],  # same origin as the page, not ApiUrl
        "issuer": OUTPUTS["AuthIssuerUrl"],
        "clientId": "client123",
        "redirectUri": OUTPUTS["WebUrl"],
        "scopes": "openid email profile",
    }
    printed = capsys.readouterr().out
    assert (
        "aws secretsmanager put-secret-value" in printed
        and "Then open https://d111.cloudfront.net/" in printed
    )


def test_files_no_longer_in_web_are_removed_and_cloudfront_is_invalidated(
    aws: Any, web_dir: Path
) -> None:
    aws.client("s3").put_object(Bucket="web-bucket", Key="old/app.js", Body=b"stale")
    outputs = publish_web.stack_outputs(aws.client("cloudformation"), "rtv")

    report = publish_web.publish(web_dir, outputs, aws.client("s3"), aws.client("cloudfront"))

    assert report.deleted == ["old/app.js"] and "old/app.js" not in objects(aws)
    invalidations = aws.client("cloudfront").list_invalidations(
        DistributionId=outputs["WebDistributionId"]
    )
    assert [i["Id"] for i in invalidations["InvalidationList"]["Items"]] == [report.invalidation]


def test_empty_mode_removes_every_object(aws: Any, web_dir: Path) -> None:
    publish_web.main(["--stack-name", "rtv", "--web-dir", str(web_dir)], session=aws)

    publish_web.main(["--stack-name", "rtv", "--empty"], session=aws)

    assert objects(aws) == {}


def test_the_stacks_own_cognito_gives_the_page_its_logout_and_revocation_endpoints() -> None:
    domain = "https://rtv-1.auth.us-east-1.amazoncognito.com"
    with_cognito = OUTPUTS | {
        "SignOutUrl": f"{domain}/logout",
        "RevocationUrl": f"{domain}/oauth2/revoke",
    }

    config = publish_web.site_config(with_cognito)

    assert config["cognitoLogoutUrl"] == f"{domain}/logout"
    assert config["revocationEndpoint"] == f"{domain}/oauth2/revoke"
    # An external issuer publishes its own in discovery: the page reads them there.
    assert "cognitoLogoutUrl" not in publish_web.site_config(OUTPUTS)


def test_a_stack_without_the_outputs_is_a_clear_error(aws: Any, web_dir: Path) -> None:
    with pytest.raises(SystemExit, match="no output"):
        publish_web.site_config({"ApiUrl": "https://x"})


def test_next_steps_name_this_stacks_secret_and_user_pool() -> None:
    text = publish_web.next_steps(
        OUTPUTS | {"OpenAIKeySecretArn": "arn:aws:secretsmanager:x", "UserPoolId": "us-east-1_AbC"}
    )

    assert (
        "--secret-id 'arn:aws:secretsmanager:x'" in text and "--user-pool-id us-east-1_AbC" in text
    )
