"""Prints template.yaml as CloudFormation runs it: after SAM's transform, as JSON.

The deploy's offline rules (deploy/template_rules.py: the capabilities the template needs, the
longest stack name its named resources allow) and the dependency-cycle check read this, not
the template as written: SAM adds roles, versions, aliases and permissions of its own. Runs
with SAM's own translator, in the pinned aws-sam-cli environment (deploy/sam_cli.py and
scripts/template_checks.sh start it). Parameters are left as they are: the transform needs
none, and the rules hold for every value.

    uvx --from aws-sam-cli==VERSION python scripts/transform_template.py template.yaml
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The translator asks IAM for managed policies' ARNs only when a function names one;
    these functions name none, so nothing is looked up (and no AWS call is made)."""

    def load(self) -> dict[str, str]:
        return {}


def transformed(path: str) -> dict[str, Any]:
    # The translator wants a region for the ARNs it writes (their partition); nothing the
    # rules read depends on which, and no AWS call is made.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with open(path) as source:
        template = yaml_parse(source.read())
    for resource in template["Resources"].values():  # the translator wants an S3 CodeUri
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/key.zip"
    result: dict[str, Any] = transform(template, {}, NoManagedPolicies())
    return result


def main(path: str) -> int:
    json.dump(transformed(path), sys.stdout, indent=1, sort_keys=True, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))
