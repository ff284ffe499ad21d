"""`make deploy`: the preflight, then build, deploy (guided the first time), publish the page.

    python -m deploy [--stack-name NAME] [--region REGION] [--parameter Key=Value ...]
                     [--guided] [--preflight-only]

1. The template as CloudFormation runs it (SAM's transform, deploy/sam_cli.py) and what it
   demands: the capabilities it needs, the longest stack name its named resources allow
   (deploy/template_rules.py).
2. The preflight (deploy/preflight.py) reads the account and prints one screen of findings;
   any blocker exits 1 before anything is built or sent.
3. `sam build`, as `make build` runs it (scripts/template_checks.sh --build-only).
4. `sam deploy` with exactly the capabilities the template needs, guided the first time (no
   parameter_overrides saved in samconfig.toml yet; the answers are saved there).
5. The page published with a config.json from the stack's outputs (deploy/publish_web.py),
   and what to do next.

The stack's name comes from --stack-name, else STACK_NAME, else samconfig.toml, else
realtime-token-vendor. AWS credentials and region as for any AWS command (AWS_PROFILE,
AWS_REGION).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deploy import samconfig
from deploy.account import Account
from deploy.findings import blockers, report
from deploy.preflight import Plan, preflight, use_function_code
from deploy.sam_cli import SamCliError, transformed_template
from deploy.template_rules import Rules, registry_schemas, rules

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STACK = "realtime-token-vendor"
Runner = Callable[[Sequence[str]], int]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--stack-name", default=os.environ.get("STACK_NAME") or None)
    parser.add_argument("--region", default=None)
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a template parameter for this deploy (beside samconfig.toml's)",
    )
    parser.add_argument("--guided", action="store_true", help="sam deploy --guided regardless")
    parser.add_argument(
        "--preflight-only", action="store_true", help="check, print the findings, deploy nothing"
    )
    parser.add_argument("--samconfig", type=Path, default=samconfig.SAMCONFIG)
    return parser


def deploy_command(
    stack_name: str,
    found: Rules,
    *,
    guided: bool,
    region: str | None = None,
    overrides: dict[str, str] | None = None,
) -> list[str]:
    """`sam deploy` as this program runs it: the capabilities are the template's own, on the
    command line, so neither a stale samconfig.toml nor the guided prompts can drop one."""
    command = ["bash", str(ROOT / "scripts" / "sam"), "deploy", "--stack-name", stack_name]
    if guided:
        command.append("--guided")
    command += ["--capabilities", *sorted(found.capabilities)]
    if region:
        command += ["--region", region]
    if overrides:
        command += ["--parameter-overrides", *(f"{k}={v}" for k, v in overrides.items())]
    return command


def build_command() -> list[str]:
    return ["bash", str(ROOT / "scripts" / "template_checks.sh"), "--build-only"]


def _run(command: Sequence[str]) -> int:
    return subprocess.run(list(command), cwd=ROOT, check=False).returncode  # noqa: S603


def main(
    argv: Sequence[str] | None = None,
    *,
    session: Any = None,
    run: Runner = _run,
    template: dict[str, Any] | None = None,
    out: Any = None,
) -> int:
    """`session` (a boto3 session), `run` (how commands run) and `template` (already
    transformed) are for the tests; the defaults are the real ones."""
    args = parser().parse_args(argv)
    out = out or sys.stdout
    config = samconfig.read(args.samconfig)
    stack_name = args.stack_name or config.stack_name or DEFAULT_STACK
    given = dict(p.split("=", 1) for p in args.parameter)
    try:
        transformed = template if template is not None else transformed_template()
    except SamCliError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    found = rules(transformed, registry_schemas())
    plan = Plan(stack_name, transformed, found, config.parameters | given, config.capabilities)
    if session is None:
        import boto3

        # botocore reads AWS_DEFAULT_REGION and the profile; AWS_REGION, which the AWS CLI
        # and this guide use, is taken here too.
        wanted = args.region or os.environ.get("AWS_REGION") or None
        session = boto3.session.Session(region_name=wanted)
    use_function_code()
    findings = preflight(plan, Account(session))
    region: str | None = session.region_name
    print(report(f"Preflight: stack {stack_name!r}, {region or 'no region'}", findings), file=out)
    if blockers(findings):
        return 1
    if args.preflight_only:
        return 0
    if run(build_command()) != 0:
        return 1
    guided = args.guided or not config.parameters
    overrides = (config.parameters | given) if given else None
    # The region the preflight checked is the one SAM CLI and publish_web are given.
    if run(deploy_command(stack_name, found, guided=guided, region=region, overrides=overrides)):
        return 1
    publish = [sys.executable, "-m", "deploy.publish_web", "--stack-name", stack_name]
    return run(publish + (["--region", region] if region else []))


if __name__ == "__main__":
    sys.exit(main())
