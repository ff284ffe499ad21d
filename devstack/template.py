"""Read template.yaml so the local stack and the tests use the template's own definitions
(the quota table, the CORS rules, the routes) instead of copies that could drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that keeps CloudFormation short tags (`!Ref X` -> {"Ref": "X"})."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node!r}")
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the stack takes its table and routes from it")
    # _CfnLoader is a SafeLoader that also reads CloudFormation's tags: it builds no objects.
    template: dict[str, Any] = yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506
    return template


def quota_table_definition(template: dict[str, Any]) -> dict[str, Any]:
    """`create_table` arguments for the quota table, plus `ttl_attribute`."""
    props = template["Resources"]["QuotaTable"]["Properties"]
    definition: dict[str, Any] = {
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    ttl = props.get("TimeToLiveSpecification") or {}
    if ttl.get("Enabled"):
        definition["ttl_attribute"] = ttl["AttributeName"]
    return definition


def schedule_group_definition(template: dict[str, Any]) -> dict[str, Any] | None:
    """`create_schedule_group` arguments (its tags) for the template's schedule group, or None
    when the template declares none. The name is the stack's: CloudFormation names it there."""
    for resource in (template.get("Resources") or {}).values():
        if resource.get("Type") == "AWS::Scheduler::ScheduleGroup":
            tags = (resource.get("Properties") or {}).get("Tags") or []
            plain = [t for t in tags if isinstance(t.get("Value"), str)]  # no intrinsics here
            return {"Tags": plain} if plain else {}
    return None


def cors_configuration(template: dict[str, Any]) -> dict[str, Any]:
    """The HttpApi's CORS rules, header names lower-cased (AllowOrigins is a parameter)."""
    cors = template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"]
    return {
        "AllowHeaders": [h.lower() for h in cors.get("AllowHeaders", [])],
        "ExposeHeaders": [h.lower() for h in cors.get("ExposeHeaders", [])],
        "AllowMethods": [m.upper() for m in cors.get("AllowMethods", [])],
        "MaxAge": cors.get("MaxAge"),
        "AllowCredentials": bool(cors.get("AllowCredentials", False)),
    }
