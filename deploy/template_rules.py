"""What CloudFormation refuses that moto (and so every local test) lets through, read from the
template as CloudFormation runs it: after SAM's transform (scripts/transform_template.py).

- **Capabilities.** A template with IAM resources deploys only with CAPABILITY_IAM
  acknowledged; one whose IAM resources have names (a role's `RoleName`) only with
  CAPABILITY_NAMED_IAM; a nested stack only with CAPABILITY_AUTO_EXPAND.
- **Name lengths.** Every property whose value holds the stack's name has a length limit
  (a function's name 64 characters, a role's 64, a queue's 80, ...): the stack's name must
  leave room for the rest of each. The limits come from the resource's registry schema
  (`maxLength`) where it states one, else from the service's documented limit below; a
  name-like property with neither is a problem to resolve here, not a guess.

A template rule cannot do the second (a parameter constraint never sees the stack's name);
the deploy program (deploy/__main__.py) checks the name it is given against the limit
computed here, and the tests check the numbers docs/deploy.md states.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# CloudFormation's own rule for a stack's name.
STACK_NAME_MAX = 128
STACK_NAME = re.compile(r"[A-Za-z][-A-Za-z0-9]*")

# IAM resources, and the property that names each (CAPABILITY_NAMED_IAM when set).
IAM_NAMES: dict[str, str | None] = {
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::User": "UserName",
    "AWS::IAM::Group": "GroupName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
    "AWS::IAM::Policy": None,
    "AWS::IAM::RolePolicy": None,
    "AWS::IAM::UserPolicy": None,
    "AWS::IAM::GroupPolicy": None,
    "AWS::IAM::AccessKey": None,
    "AWS::IAM::UserToGroupAddition": None,
}
NESTED_STACKS = {"AWS::CloudFormation::Stack", "AWS::Serverless::Application"}

# Documented limits where the registry schema states none (each service's quotas page):
# (resource type, property path with list indices as "*") -> characters.
SERVICE_LIMITS: dict[tuple[str, str], int] = {
    ("AWS::Lambda::Function", "FunctionName"): 64,
    ("AWS::SQS::Queue", "QueueName"): 80,
    ("AWS::ApiGatewayV2::Api", "Name"): 128,
    ("AWS::CloudWatch::Dashboard", "DashboardName"): 255,
    ("AWS::CloudWatch::Alarm", "AlarmName"): 255,
    ("AWS::CloudFront::OriginAccessControl", "OriginAccessControlConfig.Name"): 64,
    ("AWS::CloudFront::ResponseHeadersPolicy", "ResponseHeadersPolicyConfig.Name"): 128,
    ("AWS::CloudFront::Distribution", "DistributionConfig.Comment"): 128,
    ("AWS::WAFv2::WebACL", "Name"): 128,
    ("AWS::Logs::LogGroup", "LogGroupName"): 512,
    ("AWS::Scheduler::ScheduleGroup", "Name"): 64,
    ("AWS::Cognito::UserPool", "UserPoolName"): 128,
}
# A property that names something: its length is limited somewhere, so one must be known.
_NAME_LIKE = re.compile(r"(Name|Comment)$")
_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")
_STACK_NAME_VARIABLE = "${AWS::StackName}"

Schemas = Callable[[str], Mapping[str, Any] | None]


@dataclass(frozen=True)
class NamedProperty:
    """A property whose value holds the stack's name `times` times beside `fixed` other
    characters, within `limit` characters (from `source`: "schema" or "service")."""

    resource: str
    type: str
    path: str
    fixed: int
    times: int
    limit: int
    source: str

    @property
    def room(self) -> int:
        """The longest stack name this property allows."""
        return (self.limit - self.fixed) // self.times

    def describe(self) -> str:
        return (
            f"{self.resource}.{self.path} ({self.type}): at most {self.limit} characters, "
            f"{self.fixed} of them besides the stack's name"
        )


@dataclass(frozen=True)
class Rules:
    """What the template demands of a deploy."""

    capabilities: frozenset[str]
    named: tuple[NamedProperty, ...]
    problems: tuple[str, ...]  # what this module could not decide: fix the table or the name

    @property
    def longest_stack_name(self) -> int:
        return min([STACK_NAME_MAX, *(n.room for n in self.named)])

    @property
    def binding(self) -> NamedProperty | None:
        """The property that sets the limit (None: CloudFormation's own 128 does)."""
        tightest = min(self.named, key=lambda n: n.room, default=None)
        return tightest if tightest and tightest.room < STACK_NAME_MAX else None


def rules(template: Mapping[str, Any], schemas: Schemas) -> Rules:
    """The capabilities and name limits of a transformed template; `schemas` gives a
    resource type's registry schema (None when unknown)."""
    named: list[NamedProperty] = []
    problems: list[str] = []
    for name, resource in (template.get("Resources") or {}).items():
        kind = str(resource.get("Type"))
        schema = schemas(kind)
        for path, node in _stack_named_values(resource.get("Properties") or {}, ()):
            dotted = ".".join(path)
            limit, source = _limit(kind, path, schema)
            if limit is None:
                if _NAME_LIKE.search(path[-1]):
                    problems.append(
                        f"{name}.{dotted} ({kind}) holds the stack's name and no length limit "
                        "is known for it: add it to SERVICE_LIMITS in deploy/template_rules.py"
                    )
                continue  # an ARN in a policy, a variable's value: no name of its own
            measured = _measure(node)
            if measured is None:
                problems.append(
                    f"{name}.{dotted} ({kind}) names the stack beside values of unknown "
                    "length: its limit cannot be checked"
                )
                continue
            fixed, times = measured
            named.append(NamedProperty(name, kind, dotted, fixed, times, limit, source))
    return Rules(required_capabilities(template), tuple(named), tuple(problems))


def required_capabilities(template: Mapping[str, Any]) -> frozenset[str]:
    """What CreateChangeSet must be told for this template: CAPABILITY_NAMED_IAM when an IAM
    resource has a name (it covers unnamed ones too), CAPABILITY_IAM when only unnamed ones,
    CAPABILITY_AUTO_EXPAND for nested stacks."""
    needed: set[str] = set()
    for resource in (template.get("Resources") or {}).values():
        kind = resource.get("Type")
        properties = resource.get("Properties") or {}
        if kind in IAM_NAMES:
            named_by = IAM_NAMES[kind]
            named = named_by is not None and properties.get(named_by) not in (None, "")
            needed.add("CAPABILITY_NAMED_IAM" if named else "CAPABILITY_IAM")
        if kind in NESTED_STACKS:
            needed.add("CAPABILITY_AUTO_EXPAND")
    if "CAPABILITY_NAMED_IAM" in needed:
        needed.discard("CAPABILITY_IAM")
    return frozenset(needed)


def capabilities_missing(required: frozenset[str], given: frozenset[str]) -> list[str]:
    """What `given` lacks (NAMED_IAM acknowledges unnamed IAM resources too)."""
    covered = set(given)
    if "CAPABILITY_NAMED_IAM" in covered:
        covered.add("CAPABILITY_IAM")
    return sorted(required - covered)


def stack_name_problems(name: str, found: Rules) -> list[str]:
    """Why CloudFormation (or one of the stack's named resources) would refuse `name`."""
    problems = []
    if not STACK_NAME.fullmatch(name):
        problems.append(
            f"the stack name {name!r} is not a CloudFormation stack name (a letter, then "
            "letters, digits and hyphens)"
        )
    limit = found.longest_stack_name
    if len(name) > limit:
        binding = found.binding
        why = f": {binding.describe()}" if binding else ""
        problems.append(
            f"the stack name {name!r} has {len(name)} characters; this template allows at "
            f"most {limit}{why}"
        )
    return problems


def _stack_named_values(node: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every value under `node` built from the stack's name (a Sub or Join that uses it)."""
    if isinstance(node, dict):
        if _uses_stack_name(node):
            yield path, node
            return
        for key, value in node.items():
            yield from _stack_named_values(value, (*path, key))
    elif isinstance(node, list):
        for item in node:
            yield from _stack_named_values(item, (*path, "*"))


def _uses_stack_name(node: Mapping[str, Any]) -> bool:
    if "Fn::Sub" in node:
        text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
        return _STACK_NAME_VARIABLE in str(text)
    if "Fn::Join" in node:
        parts = node["Fn::Join"][1]
        return isinstance(parts, list) and {"Ref": "AWS::StackName"} in parts
    return node == {"Ref": "AWS::StackName"}


def _measure(node: Mapping[str, Any]) -> tuple[int, int] | None:
    """(characters besides the stack's name, times the name appears), or None when other
    values of unknown length are part of it."""
    if node == {"Ref": "AWS::StackName"}:
        return 0, 1
    if "Fn::Sub" in node:
        value = node["Fn::Sub"]
        if not isinstance(value, str):
            return None  # Sub with its own variables: lengths unknown
        times = value.count(_STACK_NAME_VARIABLE)
        rest = value.replace(_STACK_NAME_VARIABLE, "")
        if _VARIABLE.search(rest):
            return None
        return len(rest.replace("${!", "${")), times
    delimiter, parts = node["Fn::Join"]
    if not all(isinstance(p, str) or p == {"Ref": "AWS::StackName"} for p in parts):
        return None
    times = sum(1 for p in parts if not isinstance(p, str))
    fixed = sum(len(p) for p in parts if isinstance(p, str)) + len(delimiter) * (len(parts) - 1)
    return fixed, times


def _limit(
    kind: str, path: tuple[str, ...], schema: Mapping[str, Any] | None
) -> tuple[int | None, str]:
    node = _schema_at(schema, path) if schema is not None else None
    if node is not None and isinstance(node.get("maxLength"), int):
        return int(node["maxLength"]), "schema"
    documented = SERVICE_LIMITS.get((kind, ".".join(path)))
    return (documented, "service") if documented is not None else (None, "")


def _schema_at(schema: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any] | None:
    node: Mapping[str, Any] | None = _resolved(schema, schema)
    for key in path:
        if node is None:
            return None
        child = node.get("items") if key == "*" else (node.get("properties") or {}).get(key)
        node = _resolved(schema, child) if isinstance(child, Mapping) else None
    return node


def _resolved(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    """A schema node with its local `$ref` (#/definitions/X) followed."""
    seen = 0
    while isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/") and seen < 16:
        target: Any = schema
        for part in node["$ref"][2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        node, seen = target if isinstance(target, Mapping) else {}, seen + 1
    return node


def main() -> int:
    """`make template-check`'s view: what the template demands of a deploy, and whether
    samconfig.toml acknowledges it; exit 1 on a problem."""
    from deploy import samconfig
    from deploy.sam_cli import transformed_template

    found = rules(transformed_template(), registry_schemas())
    configured = samconfig.read().capabilities
    missing = capabilities_missing(found.capabilities, configured)
    print(f"capabilities: {' '.join(sorted(found.capabilities)) or 'none'}", end="")
    print(f" (samconfig.toml: {' '.join(sorted(configured)) or 'none'})")
    binding = found.binding
    print(f"stack names: at most {found.longest_stack_name} characters", end="")
    print(f" ({binding.describe()})" if binding else "")
    for problem in found.problems:
        print(f"problem: {problem}")
    if missing:
        print(f"problem: samconfig.toml's capabilities lack {' '.join(missing)}")
    return 1 if found.problems or missing else 0


def registry_schemas(region: str = "us-east-1") -> Schemas:
    """The CloudFormation registry's resource schemas as cfn-lint ships them."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER  # a dependency of the tools only

    def schema(kind: str) -> Mapping[str, Any] | None:
        try:
            found: Mapping[str, Any] = PROVIDER_SCHEMA_MANAGER.get_resource_schema(
                region, kind
            ).schema
        except Exception:  # an unknown type (a typo cfn-lint reports anyway): no schema
            return None
        return found

    return schema


if __name__ == "__main__":
    raise SystemExit(main())
