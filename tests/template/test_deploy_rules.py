"""The rules CloudFormation applies to a deploy and moto does not, checked offline on the
template as CloudFormation runs it (after SAM's transform): the capabilities a named IAM role
demands, and the longest stack name the named resources leave room for. moto creates a stack
with neither acknowledged and with any name, so no stack test could see either."""

from __future__ import annotations

import re
from typing import Any

import pytest

from deploy import samconfig
from deploy.__main__ import deploy_command
from deploy.preflight import Plan, offline
from deploy.template_rules import (
    STACK_NAME_MAX,
    Rules,
    capabilities_missing,
    registry_schemas,
    required_capabilities,
    rules,
    stack_name_problems,
)
from tests.support.env import ROOT

DEPLOY_DOC = ROOT / "docs" / "deploy.md"
SCHEMAS = registry_schemas()


@pytest.fixture(scope="module")
def found(transformed_template: dict[str, Any]) -> Rules:
    return rules(transformed_template, SCHEMAS)


# --- capabilities ----------------------------------------------------------------------------


def test_the_named_hangup_role_makes_the_template_need_named_iam(found: Rules) -> None:
    assert found.capabilities == {"CAPABILITY_NAMED_IAM"}


def test_samconfig_acknowledges_what_the_template_needs(found: Rules) -> None:
    """Plain `sam deploy` (and the guided deploy's default) read samconfig.toml."""
    assert capabilities_missing(found.capabilities, samconfig.read().capabilities) == []


@pytest.mark.parametrize("guided", [True, False])
def test_the_deploy_program_passes_exactly_what_the_template_needs(
    found: Rules, guided: bool
) -> None:
    command = deploy_command("rtv", found, guided=guided)

    at = command.index("--capabilities")
    assert command[at + 1 : at + 2] == ["CAPABILITY_NAMED_IAM"]
    assert ("--guided" in command) is guided


@pytest.mark.parametrize(
    ("resources", "needed"),
    [
        (
            {"R": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "x"}}},
            {"CAPABILITY_NAMED_IAM"},
        ),
        ({"R": {"Type": "AWS::IAM::Role", "Properties": {}}}, {"CAPABILITY_IAM"}),
        (
            {
                "A": {"Type": "AWS::IAM::Role", "Properties": {}},
                "B": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"ManagedPolicyName": "p"}},
            },
            {"CAPABILITY_NAMED_IAM"},
        ),
        (
            {"S": {"Type": "AWS::CloudFormation::Stack", "Properties": {}}},
            {"CAPABILITY_AUTO_EXPAND"},
        ),
        ({"Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "q"}}}, set()),
    ],
    ids=["named-role", "unnamed-role", "named-policy", "nested-stack", "no-iam"],
)
def test_capabilities_follow_from_the_resources(
    resources: dict[str, Any], needed: set[str]
) -> None:
    assert required_capabilities({"Resources": resources}) == needed


def test_named_iam_acknowledges_unnamed_iam_too_but_not_the_reverse() -> None:
    named, unnamed = frozenset({"CAPABILITY_NAMED_IAM"}), frozenset({"CAPABILITY_IAM"})
    assert capabilities_missing(unnamed, named) == []
    assert capabilities_missing(named, unnamed) == ["CAPABILITY_NAMED_IAM"]


# --- stack-name lengths ----------------------------------------------------------------------


def test_the_watchers_function_name_sets_the_longest_stack_name(found: Rules) -> None:
    binding = found.binding
    assert binding is not None
    assert (binding.resource, binding.path) == ("CallWatcherFunction", "FunctionName")
    assert found.longest_stack_name == 64 - len("-call-watcher") == 51
    assert found.problems == ()  # every name that holds the stack's has a known limit


def test_every_named_resource_leaves_room_for_the_limit(found: Rules) -> None:
    by_property = {f"{n.resource}.{n.path}": n for n in found.named}
    role = by_property["HangupSchedulerRole.RoleName"]
    assert (role.limit, role.source, role.room) == (64, "schema", 57)
    for named in found.named:
        assert named.room >= found.longest_stack_name
        assert named.fixed + named.times * found.longest_stack_name <= named.limit


def test_docs_state_the_limit_the_template_sets(found: Rules) -> None:
    text = " ".join(DEPLOY_DOC.read_text().split())
    stated = [
        int(n) for n in re.findall(r"stack names? [^.]*?at most (\d+) characters", text, re.I)
    ]
    assert stated and set(stated) == {found.longest_stack_name}


def test_a_name_one_over_the_limit_is_a_blocker_naming_what_binds(
    found: Rules, transformed_template: dict[str, Any]
) -> None:
    limit = found.longest_stack_name
    fits, over = "r" + "x" * (limit - 1), "r" + "x" * limit

    def findings(name: str) -> list[Any]:
        plan = Plan(name, transformed_template, found, {}, frozenset({"CAPABILITY_NAMED_IAM"}))
        return [f for f in offline(plan) if f.level == "blocker"]

    assert findings(fits) == []
    (blocker,) = findings(over)
    assert blocker.topic == "stack name" and "CallWatcherFunction.FunctionName" in blocker.says
    assert stack_name_problems("9lives", found) and stack_name_problems("a_b", found)


def sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def one(kind: str, properties: dict[str, Any]) -> Rules:
    return rules({"Resources": {"R": {"Type": kind, "Properties": properties}}}, SCHEMAS)


def test_limits_come_from_the_registry_schema_where_it_states_one() -> None:
    (named,) = one("AWS::IAM::Role", {"RoleName": sub("${AWS::StackName}-x")}).named
    assert (named.limit, named.source, named.room) == (64, "schema", 62)


def test_else_from_the_services_documented_limit() -> None:
    (named,) = one("AWS::SQS::Queue", {"QueueName": sub("${AWS::StackName}-q")}).named
    assert (named.limit, named.source, named.room) == (80, "service", 78)


def test_a_stack_name_used_twice_counts_twice_and_joins_count_their_delimiters() -> None:
    (twice,) = one("AWS::IAM::Role", {"RoleName": sub("${AWS::StackName}-${AWS::StackName}")}).named
    assert twice.room == (64 - 1) // 2
    joined = {"Fn::Join": ["-", [{"Ref": "AWS::StackName"}, "role"]]}
    (join,) = one("AWS::IAM::Role", {"RoleName": joined}).named
    assert join.fixed == len("-role")


def test_a_name_without_a_known_limit_or_of_unknown_length_is_a_problem_not_a_guess() -> None:
    unknown = one("AWS::Some::Thing", {"ThingName": sub("${AWS::StackName}-t")})
    assert unknown.named == () and "SERVICE_LIMITS" in unknown.problems[0]
    unmeasured = one("AWS::IAM::Role", {"RoleName": sub("${AWS::StackName}-${Env}")})
    assert unmeasured.named == () and "unknown length" in unmeasured.problems[0]


def test_arns_and_documents_that_mention_the_stack_name_are_not_names() -> None:
    policy = {
        "Policies": [
            {"PolicyDocument": {"Statement": [{"Resource": sub("arn:x:${AWS::StackName}")}]}}
        ]
    }
    assert one("AWS::IAM::Role", policy) == Rules(frozenset({"CAPABILITY_IAM"}), (), ())


def test_cloudformations_own_limit_bounds_a_template_without_names() -> None:
    assert rules({"Resources": {}}, SCHEMAS).longest_stack_name == STACK_NAME_MAX
