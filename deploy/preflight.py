"""The preflight `make deploy` starts with: the template's rules that CloudFormation applies
and moto does not (deploy/template_rules.py), and the account as it stands (deploy/account.py):
credentials and region, the stack's state, Lambda's concurrency against what the parameters
reserve (deploy/capacity.py), and the shape of the stack's two secrets, checked by the
function's own rules and never printed. Each finding says what is so and what to do; any
blocker stops the deploy before anything is built or sent.

    python -m deploy --preflight-only [--stack-name NAME] [--parameter Key=Value ...]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.account import Account, AccountError, StackState
from deploy.capacity import Capacity
from deploy.capacity import findings as capacity_findings
from deploy.findings import Finding
from deploy.template_rules import Rules, capabilities_missing, stack_name_problems

ROOT = Path(__file__).resolve().parents[1]
WAF_REGION = "us-east-1"  # CloudFront's web ACLs live there, whatever the stack's region
# States CloudFormation will not deploy over, and what to do about each.
STUCK = {
    "ROLLBACK_COMPLETE": "a first deploy failed and left it: `make destroy`, then deploy again",
    "ROLLBACK_FAILED": "delete it (`make destroy`; see its events first), then deploy again",
    "DELETE_FAILED": "finish deleting it (`make destroy`; see its events), then deploy again",
    "UPDATE_ROLLBACK_FAILED": "aws cloudformation continue-update-rollback --stack-name NAME",
}


@dataclass(frozen=True)
class Plan:
    """What is about to be deployed: the stack's name, the transformed template, its rules,
    and the parameters given (samconfig.toml's overrides and the command line's)."""

    stack_name: str
    template: Mapping[str, Any]
    rules: Rules
    overrides: Mapping[str, str]
    configured_capabilities: frozenset[str]


def preflight(plan: Plan, account: Account) -> list[Finding]:
    found = offline(plan)
    try:
        who = account.identity()
    except AccountError as exc:
        return [
            *found,
            Finding(
                "blocker",
                "credentials",
                f"the account cannot be read ({exc})",
                "set AWS_PROFILE (or credentials) and AWS_REGION as for any AWS command",
            ),
        ]
    region = account.region
    if not region:
        return [
            *found,
            Finding("blocker", "region", "no region is set", "set AWS_REGION (or --region)"),
        ]
    found.append(Finding("ok", "account", f"account {who}, region {region}"))
    try:
        stack = account.stack(plan.stack_name)
    except AccountError as exc:
        return [*found, Finding("blocker", "stack", f"cannot read the stack ({exc})")]
    found += _stack(plan.stack_name, stack)
    parameters = effective_parameters(plan, stack)
    found += _region(region, parameters)
    found += _concurrency(plan, account, stack, parameters)
    found += _secrets(account, stack, parameters)
    return found


def offline(plan: Plan) -> list[Finding]:
    """What the template alone decides: the stack's name, the capabilities, the limits."""
    found = [
        Finding("blocker", "stack name", p, "choose a shorter name (STACK_NAME=...)")
        for p in stack_name_problems(plan.stack_name, plan.rules)
    ]
    if not found:
        found.append(
            Finding(
                "ok",
                "stack name",
                f"{plan.stack_name!r} fits (at most {plan.rules.longest_stack_name} "
                "characters for this template)",
            )
        )
    found += [Finding("blocker", "template", p) for p in plan.rules.problems]
    required = " ".join(sorted(plan.rules.capabilities)) or "none"
    missing = capabilities_missing(plan.rules.capabilities, plan.configured_capabilities)
    if missing:
        configured = " ".join(sorted(plan.configured_capabilities)) or "none"
        found.append(
            Finding(
                "warning",
                "capabilities",
                f"samconfig.toml acknowledges {configured}; the template needs {required} "
                "(make deploy passes it; plain `sam deploy` fails)",
                f'capabilities = "{required}" in samconfig.toml',
            )
        )
    else:
        found.append(Finding("ok", "capabilities", f"{required}, as the template needs"))
    return found


def effective_parameters(plan: Plan, stack: StackState | None) -> dict[str, str]:
    """The values CloudFormation will use: the template's defaults, then the stack's current
    values (SAM CLI keeps those it is not given), then the overrides."""
    declared = plan.template.get("Parameters") or {}
    values = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
    if stack is not None:
        values |= {k: v for k, v in stack.parameters.items() if k in declared}
    return values | dict(plan.overrides)


def _stack(name: str, stack: StackState | None) -> list[Finding]:
    if stack is None:
        return [Finding("ok", "stack", f"no stack {name!r} yet: this is a first deploy")]
    if stack.status in STUCK:
        return [
            Finding(
                "blocker",
                "stack",
                f"{name!r} is {stack.status}: CloudFormation will not update it",
                STUCK[stack.status].replace("NAME", name),
            )
        ]
    if stack.status.endswith("_IN_PROGRESS"):
        return [
            Finding(
                "blocker",
                "stack",
                f"{name!r} is {stack.status}",
                "wait until it is done, then deploy",
            )
        ]
    return [Finding("ok", "stack", f"{name!r} is {stack.status}: this deploy updates it")]


def _region(region: str, parameters: Mapping[str, str]) -> list[Finding]:
    if parameters.get("EnableWaf") != "true":
        return []
    found = []
    if region != WAF_REGION:
        found.append(
            Finding(
                "blocker",
                "region",
                f"EnableWaf=true needs the stack in {WAF_REGION} (CloudFront's web ACLs live "
                f"there), not {region}",
                f"deploy in {WAF_REGION} (AWS_REGION={WAF_REGION}), or EnableWaf=false",
            )
        )
    if parameters.get("ApiDoor") != "cloudfront":
        found.append(
            Finding(
                "blocker",
                "WAF",
                "EnableWaf=true with ApiDoor=execute-api: every client could skip WAF",
                "ApiDoor=cloudfront",
            )
        )
    return found


def _concurrency(
    plan: Plan, account: Account, stack: StackState | None, parameters: Mapping[str, str]
) -> list[Finding]:
    try:
        pool = account.concurrency()
        ours = 0
        if stack is not None:
            for output in ("FunctionName", "WatcherFunctionName"):
                if stack.outputs.get(output):
                    ours += account.reserved(stack.outputs[output])
    except AccountError as exc:
        return [
            Finding(
                "warning",
                "concurrency",
                f"not checked ({exc})",
                "allow lambda:GetAccountSettings and lambda:GetFunctionConcurrency",
            )
        ]
    watcher = _watcher_settings(plan.template)
    return capacity_findings(
        Capacity(
            quota=pool.quota,
            unreserved=pool.unreserved,
            ours=ours,
            token=_number(parameters.get("ReservedConcurrency")),
            watchers=_number(parameters.get("WatcherReservedConcurrency")),
            watcher_seconds=watcher.get("WATCHER_MAX_SECONDS", 840),
            handover_seconds=watcher.get("WATCHER_HANDOVER_SECONDS", 30),
        )
    )


def _secrets(
    account: Account, stack: StackState | None, parameters: Mapping[str, str]
) -> list[Finding]:
    if stack is None:
        return [
            Finding(
                "ok",
                "secrets",
                "the stack creates the OpenAI key's secret (empty) and the door's (generated)",
                "after the deploy, put the OpenAI key (the command is printed then)",
            )
        ]
    found = [_openai_key(account, stack.outputs.get("OpenAIKeySecretArn"))]
    if parameters.get("ApiDoor") == "cloudfront":
        found.append(_door_secret(account, stack.outputs.get("OriginSecretArn")))
    return found


def _openai_key(account: Account, arn: str | None) -> Finding:
    from token_vendor.core.openai_key import UnusableSecret, parse_secret

    if not arn:
        return Finding("warning", "OpenAI key", "the stack has no OpenAIKeySecretArn output")
    try:
        value = account.secret(arn)
    except AccountError as exc:
        return Finding("warning", "OpenAI key", f"not checked ({exc})")
    if value is None:
        return Finding(
            "blocker",
            "OpenAI key",
            "the stack's secret is gone (deleted, or scheduled for deletion)",
            f"aws secretsmanager restore-secret --secret-id {arn}",
        )
    put = f"aws secretsmanager put-secret-value --secret-id {arn} --secret-string 'sk-...'"
    if _placeholder(value):
        return Finding(
            "warning", "OpenAI key", "not put yet: the function answers 503 until it is", put
        )
    try:
        parse_secret(value)
    except UnusableSecret as exc:
        # The function's own reason, which never quotes the value.
        return Finding("blocker", "OpenAI key", f"the function would refuse it: {exc}", put)
    return Finding("ok", "OpenAI key", "present, and a key the function accepts")


def _door_secret(account: Account, arn: str | None) -> Finding:
    from token_vendor.api.door import MIN_LENGTH, usable_secret

    if not arn:  # a stack deployed before the door existed: this deploy creates it
        return Finding("ok", "door secret", "created by this deploy (ApiDoor=cloudfront)")
    try:
        value = account.secret(arn)
    except AccountError as exc:
        return Finding("warning", "door secret", f"not checked ({exc})")
    if value is None or not usable_secret(value):
        what = "gone" if value is None else f"not {MIN_LENGTH}+ printable characters"
        return Finding(
            "blocker",
            "door secret",
            f"the secret the distribution sends is {what}: the API would refuse every request",
            "put a new one as docs/deploy.md says (Rotating the door's secret)",
        )
    return Finding("ok", "door secret", "present, and one the function accepts")


def _placeholder(value: str) -> bool:
    """The value the template creates the secret with: no key put yet."""
    try:
        document = json.loads(value)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("api_key") == ""


def _watcher_settings(template: Mapping[str, Any]) -> dict[str, int]:
    """The watcher's hand-over timing as the template sets it."""
    watcher = (template.get("Resources") or {}).get("CallWatcherFunction") or {}
    variables = ((watcher.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
    return {k: int(v) for k, v in variables.items() if isinstance(v, str) and v.isdigit()}


def _number(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


def use_function_code() -> None:
    """The function's own rules for its secrets (what it refuses, the preflight refuses):
    its CodeUri on the path, as Lambda has it."""
    functions = str(ROOT / "functions")
    if functions not in sys.path:
        sys.path.insert(0, functions)
