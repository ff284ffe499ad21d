"""Publish `web/` to the stack's bucket, with a `config.json` made from the stack's outputs,
and invalidate CloudFront. `--empty` empties the bucket (for `make destroy`).

    python -m deploy.publish_web --stack-name realtime-token-vendor [--region eu-west-1]
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# The page and its config change with every deploy: browsers must ask again. The rest may be
# cached for an hour (no build step means no hashed file names).
NO_CACHE = {"index.html", "config.json"}
NO_CACHE_HEADER = "no-cache"
CACHE_HEADER = "public, max-age=3600"
DEFAULT_SCOPES = "openid email profile"


@dataclass
class Published:
    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    invalidation: str | None = None


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def site_config(outputs: dict[str, str], scopes: str = DEFAULT_SCOPES) -> dict[str, str]:
    """What the page reads from config.json, from the stack's outputs."""
    missing = [
        k for k in ("WebApiUrl", "AuthIssuerUrl", "WebClientId", "WebUrl") if not outputs.get(k)
    ]
    if missing:
        raise SystemExit(
            f"publish_web: the stack has no output {', '.join(missing)}; is it deployed?"
        )
    return {
        # The API under the page's own origin: no CORS, no preflight (ApiUrl is for apps).
        "apiBaseUrl": outputs["WebApiUrl"],
        "issuer": outputs["AuthIssuerUrl"],
        "clientId": outputs["WebClientId"],
        "redirectUri": outputs["WebUrl"],
        "scopes": scopes,
    } | (
        # The stack's own Cognito: its logout and revocation endpoints are in no discovery
        # document, and its logout takes client_id and logout_uri.
        {"cognitoLogoutUrl": outputs["SignOutUrl"], "revocationEndpoint": outputs["RevocationUrl"]}
        if outputs.get("SignOutUrl") and outputs.get("RevocationUrl")
        else {}
    )


def content_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def publish(
    web_dir: Path, outputs: dict[str, str], s3: Any, cloudfront: Any, scopes: str = DEFAULT_SCOPES
) -> Published:
    bucket, report = outputs["WebBucketName"], Published()
    files = {
        p.relative_to(web_dir).as_posix(): p.read_bytes()
        for p in sorted(web_dir.rglob("*"))
        if p.is_file() and p.name != "config.json"
    }
    files["config.json"] = (json.dumps(site_config(outputs, scopes), indent=2) + "\n").encode()
    for key, body in files.items():
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType=content_type(key),
            CacheControl=NO_CACHE_HEADER if key in NO_CACHE else CACHE_HEADER,
        )
        report.uploaded.append(key)
    stale = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
        if o["Key"] not in files
    ]
    for start in range(0, len(stale), 1000):
        s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale[start : start + 1000]]}
        )
    report.deleted = stale
    invalidation = cloudfront.create_invalidation(
        DistributionId=outputs["WebDistributionId"],
        InvalidationBatch={
            "Paths": {"Quantity": 1, "Items": ["/*"]},
            "CallerReference": f"publish-{time.time_ns()}",
        },
    )
    report.invalidation = invalidation["Invalidation"]["Id"]
    return report


def empty_bucket(bucket: str, s3: Any) -> int:
    """Every object, every version and delete marker: CloudFormation deletes only empty buckets."""
    count = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        items = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if items:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": items, "Quiet": True})
            count += len(items)
    return count


def main(argv: list[str] | None = None, session: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack-name", required=True)
    parser.add_argument("--region")
    parser.add_argument("--web-dir", type=Path, default=ROOT / "web")
    parser.add_argument("--scopes", default=DEFAULT_SCOPES, help="OAuth scopes the page asks for")
    parser.add_argument(
        "--empty", action="store_true", help="empty the bucket instead (before sam delete)"
    )
    args = parser.parse_args(argv)
    if session is None:
        import boto3

        session = boto3.session.Session(region_name=args.region)
    outputs = stack_outputs(session.client("cloudformation"), args.stack_name)
    s3 = session.client("s3")
    if args.empty:
        bucket = outputs["WebBucketName"]
        print(f"emptied {bucket}: {empty_bucket(bucket, s3)} objects")
        return
    report = publish(args.web_dir, outputs, s3, session.client("cloudfront"), args.scopes)
    print(
        f"published {len(report.uploaded)} files to s3://{outputs['WebBucketName']} "
        f"(removed {len(report.deleted)} stale), invalidation {report.invalidation}"
    )
    print(next_steps(outputs))


def next_steps(outputs: dict[str, str]) -> str:
    """What the operator does after the first deploy, with this stack's own ids."""
    lines = [
        "",
        "Deployed. What to do next:",
        "  1. Put the OpenAI key in the secret (the function answers 503 until you do):",
        "       aws secretsmanager put-secret-value"
        f" --secret-id '{outputs.get('OpenAIKeySecretArn', '<secret arn>')}'"
        " --secret-string 'sk-...'",
    ]
    if outputs.get("UserPoolId"):
        lines += [
            "  2. Create a user in the Cognito pool (a temporary password is e-mailed):",
            f"       aws cognito-idp admin-create-user --user-pool-id {outputs['UserPoolId']} "
            "--username person@example.com \\",
            "         --user-attributes Name=email,Value=person@example.com"
            " Name=email_verified,Value=true",
        ]
    lines.append(f"  Then open {outputs['WebUrl']} and press Start talking.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
