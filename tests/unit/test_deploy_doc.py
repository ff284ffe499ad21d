"""docs/deploy.md names only what exists: every parameter and output of template.yaml is in
its tables and nothing else is; every other name in code spans is one of the template's
parameters, outputs, resources or metrics (or one of AWS's own words, listed below); every
`make` target, `python -m` module and deploy program flag it names exists; and its table of
the preflight's findings is exactly the topics deploy/findings.py can report."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from deploy import __main__ as deploy_program
from deploy.findings import TOPICS
from devstack.template import load_template
from tests.support.env import ROOT

DOC = (ROOT / "docs" / "deploy.md").read_text()
TEMPLATE = load_template()
PARAMETERS = set(TEMPLATE["Parameters"])
OUTPUTS = set(TEMPLATE["Outputs"])
RESOURCES = set(TEMPLATE["Resources"])
MAKEFILE = (ROOT / "Makefile").read_text()
# AWS's own names the guide quotes (a metric AWS emits, a field of what AWS sends), not ours.
AWS_WORDS = {
    "AsyncEventsDropped": "Lambda's metric",
    "DestinationDeliveryFailures": "Lambda's metric",
    "InvocationsFailedToBeSentToDeadLetterCount": "Scheduler's metric",
    "Throttles": "Lambda's metric",
    "Errors": "Lambda's metric",
    "FunctionError": "Lambda's Invoke answer",
    "RetriesExhausted": "Lambda's on-failure record",
    "EventAgeExceeded": "Lambda's on-failure record",
    "CachingDisabled": "CloudFront's managed policy",
    "AllViewerExceptHostHeader": "CloudFront's managed policy",
    "MinimumProtocolVersion": "CloudFront's setting",
    "AccountLimit": "a field of Lambda's GetAccountSettings (an `aws --query`)",
    "OutputKey": "a field of CloudFormation's DescribeStacks (an `aws --query`)",
}
# Names of ours that are not names: a preflight topic ("OpenAI key").
TOPIC_WORDS = {word for topic in TOPICS for word in topic.split()}


def code_spans(text: str) -> Iterator[str]:
    """Inline code and the lines of fenced blocks."""
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    yield from (line for block in fenced for line in block.splitlines())
    yield from re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))


def table(heading: str) -> list[list[str]]:
    """The first column's code names of each row of the table under `heading`."""
    section = DOC.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.findall(r"`([^`]+)`", row.split("|")[1]) for row in rows]


def metric_names() -> set[str]:
    """Every metric the template's alarms and dashboard name."""
    text = (ROOT / "template.yaml").read_text()
    names = set(re.findall(r"MetricName: ([A-Za-z]+)", text))
    names |= set(re.findall(r'"RealtimeTokenVendor", "([A-Za-z]+)"', text))
    names |= set(re.findall(r'\[\s*"\.",\s*"([A-Za-z]+)"', text))
    names |= set(re.findall(r'MetricName=\\\\"([A-Za-z]+)\\\\"', text))
    names |= set(re.findall(r'MetricName=\\"([A-Za-z]+)\\"', text))
    return names


def test_the_parameters_table_lists_every_parameter_and_nothing_else() -> None:
    listed = [name for row in table("## Parameters") for name in row[:2] if name in PARAMETERS]
    firsts = {row[0] for row in table("## Parameters")}
    assert sorted(listed) == sorted(set(listed)), "a parameter is listed twice"
    assert set(listed) == PARAMETERS
    assert firsts <= PARAMETERS


def test_the_outputs_table_lists_every_output_and_nothing_else() -> None:
    listed = {name for row in table("## Outputs") for name in row}
    assert listed == OUTPUTS


def template_keys(node: Any) -> Iterator[str]:
    """Every key anywhere in the template (its properties, its rules' names, ...)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from template_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from template_keys(item)


def test_every_name_in_code_is_the_templates_or_awss() -> None:
    known = (
        PARAMETERS | OUTPUTS | RESOURCES | metric_names() | set(template_keys(TEMPLATE))
        | set(AWS_WORDS) | TOPIC_WORDS
    )  # fmt: skip
    # CamelCase words, not an IAM action (`sts:GetCallerIdentity`), a type or a YAML tag.
    named = {
        word
        for span in code_spans(DOC)
        for word in re.findall(r"(?<![\w./:!-])([A-Z][a-z]+(?:[A-Z][a-z0-9]*)+)(?![\w.:-])", span)
    }
    assert sorted(named - known) == []


def test_every_make_target_and_variable_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", MAKEFILE, re.M))
    read = MAKEFILE + "".join(p.read_text() for p in (ROOT / "deploy").glob("*.*"))
    for span in code_spans(DOC):
        for command in re.findall(r"make ([a-z][a-z-]*)((?: [A-Z_]+=\S+)*)", span):
            assert command[0] in targets, f"make {command[0]}"
            for variable in re.findall(r"([A-Z_]+)=", command[1]):
                assert variable in read, f"make {command[0]} {variable}=: nothing reads it"


def test_every_python_module_named_exists() -> None:
    modules = {m for span in code_spans(DOC) for m in re.findall(r"python -m ([\w.]+)", span)}
    assert modules
    for module in modules:
        path = ROOT / module.replace(".", "/")
        assert (path.with_suffix(".py")).is_file() or (path / "__main__.py").is_file(), module


def deploy_flags() -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", deploy_program.parser().format_help()))


def test_every_flag_of_the_deploy_program_exists() -> None:
    flags = deploy_flags()
    lines = [
        line
        for line in DOC.splitlines()
        if re.search(r"python -m deploy(?!\.)|deploy/deploy\.sh|make deploy", line)
    ]
    used = {flag for line in lines for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", line)}
    assert used and used <= flags, used - flags
    for name in re.findall(r"--parameter ([A-Za-z]+)=", DOC):
        assert name in PARAMETERS


def test_the_findings_table_explains_every_topic_the_preflight_reports() -> None:
    section = DOC.split("### 4. The preflight", 1)[1].split("\n### ", 1)[0]
    explained = [
        re.match(r"\| `([^`]+)` \|", line).group(1)  # type: ignore[union-attr]
        for line in section.splitlines()
        if re.match(r"\| `[^`]+` \|", line)
    ]
    assert explained == list(TOPICS)


@pytest.mark.parametrize("step", ["Prerequisites", "identity provider", "preflight", "make deploy",
                                  "OpenAI key", "user", "check after", "Tearing down"])  # fmt: skip
def test_the_first_deploy_is_walked_step_by_step(step: str) -> None:
    steps = DOC.split("## A first deploy, step by step", 1)[1].split("\n## ", 1)[0]
    assert re.search(rf"^### \d+\. .*{re.escape(step)}", steps, re.M | re.I), step
