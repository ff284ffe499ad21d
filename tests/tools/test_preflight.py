"""`make deploy`'s preflight against moto's server: the account as it stands (credentials,
region, the stack's state, Lambda's concurrency, the stack's secrets) read by the real
adapter over HTTP, with the template as CloudFormation runs it. Each finding is one moto
would never produce by failing: it deploys any stack, in any region, with any reservation
its quota model allows, and never checks a secret's shape."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import httpx
import pytest

from deploy.__main__ import main
from deploy.account import Account, StackState
from deploy.findings import Finding
from deploy.preflight import Plan, preflight, use_function_code
from deploy.template_rules import Rules, registry_schemas, rules
from tests.support.aws import use_fake_aws
from tests.support.env import ROOT
from tests.support.moto_account import QUOTA_VARIABLE, function_zip, moto_server

pytestmark = pytest.mark.stack  # moto's server on loopback
STACK = "rtv"
KEY = "sk-proj-" + "k" * 40  # a fake key, never a real one
DOOR = "D" * 64


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def session(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 session as an operator has one, every call answered by moto's server."""
    use_fake_aws(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.delenv(QUOTA_VARIABLE, raising=False)
    httpx.post(moto_url + "/moto-api/reset").raise_for_status()  # each test its own account
    return boto3.session.Session(region_name="us-east-1")


@pytest.fixture(scope="module")
def found(transformed_template: dict[str, Any]) -> Rules:
    return rules(transformed_template, registry_schemas())


class Commands:
    """What the deploy program would have run, in order; each succeeds."""

    def __init__(self) -> None:
        self.ran: list[list[str]] = []

    def __call__(self, command: Sequence[str]) -> int:
        self.ran.append(list(command))
        return 0


def plan(template: dict[str, Any], found: Rules, name: str = STACK, **overrides: str) -> Plan:
    return Plan(name, template, found, overrides, frozenset({"CAPABILITY_NAMED_IAM"}))


def check(session: Any, template: dict[str, Any], found: Rules, **overrides: str) -> list[Finding]:
    use_function_code()
    return preflight(plan(template, found, **overrides), Account(session))


def about(findings: list[Finding], topic: str) -> list[Finding]:
    return [f for f in findings if f.topic == topic]


def levels(findings: list[Finding]) -> dict[str, str]:
    return {f.topic: f.level for f in findings}


def existing_stack(
    session: Any,
    *,
    openai_key: str = '{"api_key": ""}',
    door: str | None = DOOR,
    parameters: dict[str, str] | None = None,
    reserve: dict[str, int] | None = None,
) -> None:
    """A deployed stack as the preflight sees one: its parameters, its outputs, its two
    secrets and its two functions with what they reserve."""
    secrets = session.client("secretsmanager")
    outputs = {
        "OpenAIKeySecretArn": secrets.create_secret(Name="rtv-openai", SecretString=openai_key)[
            "ARN"
        ],
        "FunctionName": "rtv-TokenFunction",
        "WatcherFunctionName": "rtv-call-watcher",
    }
    if door is not None:
        outputs["OriginSecretArn"] = secrets.create_secret(Name="rtv-door", SecretString=door)[
            "ARN"
        ]
    declared = parameters or {}
    template = {
        "Parameters": {k: {"Type": "String"} for k in declared},
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {k: {"Value": v} for k, v in outputs.items()},
    }
    session.client("cloudformation").create_stack(
        StackName=STACK,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in declared.items()],
    )
    lam = session.client("lambda")
    role = session.client("iam").create_role(RoleName="fn", AssumeRolePolicyDocument="{}")
    for function in ("rtv-TokenFunction", "rtv-call-watcher"):
        lam.create_function(
            FunctionName=function,
            Runtime="python3.13",
            Role=role["Role"]["Arn"],
            Handler="app.handler",
            Code={"ZipFile": function_zip()},
        )
    for function, reserved in (reserve or {}).items():
        lam.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=reserved)


def other_function(session: Any, reserved: int) -> None:
    """Another application's function in the same account, reserving `reserved`."""
    lam = session.client("lambda")
    role = session.client("iam").create_role(RoleName="other", AssumeRolePolicyDocument="{}")
    lam.create_function(
        FunctionName="someone-elses",
        Runtime="python3.13",
        Role=role["Role"]["Arn"],
        Handler="app.handler",
        Code={"ZipFile": function_zip()},
    )
    lam.put_function_concurrency(
        FunctionName="someone-elses", ReservedConcurrentExecutions=reserved
    )


# --- a first deploy ------------------------------------------------------------------------


def test_a_first_deploy_with_the_defaults_has_no_blocker(
    session: Any, transformed_template: dict[str, Any], found: Rules
) -> None:
    findings = check(session, transformed_template, found)

    assert [f for f in findings if f.level != "ok"] == []
    assert levels(findings) == {
        "stack name": "ok", "capabilities": "ok", "account": "ok", "stack": "ok",
        "concurrency": "ok", "secrets": "ok",
    }  # fmt: skip
    (concurrency,) = about(findings, "concurrency")
    assert "100 reserved for watchers: 50 live calls" in concurrency.says
    assert "900 unreserved" in concurrency.says


def test_a_quota_too_small_for_the_reservations_is_a_blocker_saying_what_to_ask_for(
    session: Any, transformed_template: dict[str, Any], found: Rules, monkeypatch: Any
) -> None:
    monkeypatch.setenv(QUOTA_VARIABLE, "10")  # what new accounts often start with

    findings = check(session, transformed_template, found)

    (blocker,) = [f for f in findings if f.level == "blocker"]
    assert blocker.topic == "concurrency" and "leaves -90" in blocker.says
    assert "at least 200" in blocker.todo and "L-B99A9384" in blocker.todo
    assert about(findings, "quota")[0].level == "warning"


def test_unbounded_watchers_are_a_warning_with_the_arithmetic(
    session: Any, transformed_template: dict[str, Any], found: Rules
) -> None:
    findings = check(session, transformed_template, found, WatcherReservedConcurrency="0")

    (concurrency,) = about(findings, "concurrency")
    assert concurrency.level == "warning"
    assert "500 live calls handing over at once" in concurrency.says
    assert "WatcherReservedConcurrency" in concurrency.todo


def test_reservations_of_other_functions_count_and_this_stacks_own_are_given_back(
    session: Any, transformed_template: dict[str, Any], found: Rules, monkeypatch: Any
) -> None:
    monkeypatch.setenv(QUOTA_VARIABLE, "400")
    other_function(session, 150)
    existing_stack(session, reserve={"rtv-call-watcher": 100}, door=None)

    ok = check(session, transformed_template, found)  # 400 - 150 - 100 (replaced) = 150
    (concurrency,) = about(ok, "concurrency")
    assert concurrency.level == "ok" and "150 unreserved" in concurrency.says

    more = check(session, transformed_template, found, WatcherReservedConcurrency="160")
    (blocker,) = about(more, "concurrency")
    assert blocker.level == "blocker" and "(150 reserved by other functions)" in blocker.says


def test_waf_outside_us_east_1_or_without_the_door_is_a_blocker(
    moto_url: str, session: Any, transformed_template: dict[str, Any], found: Rules
) -> None:
    elsewhere = boto3.session.Session(region_name="eu-west-1")

    findings = check(elsewhere, transformed_template, found, EnableWaf="true")
    (region,) = about(findings, "region")
    assert region.level == "blocker" and "us-east-1" in region.todo

    open_door = check(session, transformed_template, found, EnableWaf="true", ApiDoor="execute-api")
    assert about(open_door, "WAF")[0].level == "blocker"
    assert about(check(elsewhere, transformed_template, found), "region") == []


def test_a_stack_name_over_the_limit_is_a_blocker(
    session: Any, transformed_template: dict[str, Any], found: Rules
) -> None:
    use_function_code()
    findings = preflight(plan(transformed_template, found, "r" * 52), Account(session))
    assert about(findings, "stack name")[0].level == "blocker"


def test_no_credentials_is_one_blocker_and_no_other_call(
    transformed_template: dict[str, Any], found: Rules, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(ROOT / "no-such-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(ROOT / "no-such-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    session = boto3.session.Session(region_name="us-east-1")

    findings = check(session, transformed_template, found)

    (blocker,) = [f for f in findings if f.level == "blocker"]
    assert blocker.topic == "credentials" and "no AWS credentials" in blocker.says


# --- an existing stack -----------------------------------------------------------------------


def test_a_key_not_put_yet_is_a_warning_with_the_command(
    session: Any, transformed_template: dict[str, Any], found: Rules
) -> None:
    existing_stack(session)

    (key,) = about(check(session, transformed_template, found), "OpenAI key")
    assert (
        key.level == "warning" and "put-secret-value --secret-id arn:aws:secretsmanager" in key.todo
    )


@pytest.mark.parametrize(
    "stored",
    [KEY + "\n", " " + KEY, KEY[:10] + "\u200b" + KEY[10:], '{"organization": "org"}'],
    ids=["trailing-newline", "leading-space", "zero-width-space", "json-without-key"],
)
def test_a_key_the_function_would_refuse_is_a_blocker_that_never_shows_it(
    session: Any, transformed_template: dict[str, Any], found: Rules, stored: str
) -> None:
    existing_stack(session, openai_key=stored)
    out = io.StringIO()

    code = main(
        ["--stack-name", STACK, "--preflight-only"],
        session=session,
        template=transformed_template,
        out=out,
    )

    assert code == 1
    assert "BLOCKER  OpenAI key" in out.getvalue()
    assert KEY[:12] not in out.getvalue() and KEY[-12:] not in out.getvalue()


def test_a_usable_key_and_door_secret_are_ok(
    session: Any, transformed_template: dict[str, Any], found: Rules
) -> None:
    existing_stack(session, openai_key=KEY)
    findings = check(session, transformed_template, found)

    assert about(findings, "OpenAI key")[0].level == "ok"
    assert about(findings, "door secret")[0].level == "ok"
    assert about(findings, "stack")[0].says.endswith("this deploy updates it")


@pytest.mark.parametrize("door", ["short", "has spaces " * 4])
def test_a_door_secret_the_function_would_refuse_is_a_blocker(
    session: Any, transformed_template: dict[str, Any], found: Rules, door: str
) -> None:
    existing_stack(session, openai_key=KEY, door=door)
    (finding,) = about(check(session, transformed_template, found), "door secret")
    assert finding.level == "blocker" and door not in finding.says


def test_the_stacks_own_parameters_count_when_not_given_again(
    session: Any, transformed_template: dict[str, Any], found: Rules
) -> None:
    """SAM keeps a parameter's previous value: an old stack keeps WatcherReservedConcurrency=0."""
    existing_stack(session, openai_key=KEY, parameters={"WatcherReservedConcurrency": "0"})

    (concurrency,) = about(check(session, transformed_template, found), "concurrency")
    assert concurrency.level == "warning"
    given = check(session, transformed_template, found, WatcherReservedConcurrency="100")
    assert about(given, "concurrency")[0].level == "ok"


@pytest.mark.parametrize(
    ("status", "level"),
    [
        ("ROLLBACK_COMPLETE", "blocker"),
        ("UPDATE_ROLLBACK_FAILED", "blocker"),
        ("UPDATE_IN_PROGRESS", "blocker"),
        ("UPDATE_ROLLBACK_COMPLETE", "ok"),
        ("CREATE_COMPLETE", "ok"),
    ],
)
def test_a_stack_cloudformation_will_not_update_is_a_blocker(status: str, level: str) -> None:
    """moto never leaves a stack in these states: the rule itself, on the state it reads."""
    from deploy.preflight import _stack

    (finding,) = _stack(STACK, StackState(status))
    assert finding.level == level


# --- the program -----------------------------------------------------------------------------


def test_one_screen_and_nothing_built_on_a_blocker(
    session: Any, transformed_template: dict[str, Any], monkeypatch: Any
) -> None:
    monkeypatch.setenv(QUOTA_VARIABLE, "10")
    existing_stack(session)
    commands = Commands()
    out = io.StringIO()

    code = main(
        ["--stack-name", STACK],
        session=session,
        template=transformed_template,
        run=commands,
        out=out,
    )

    lines = out.getvalue().splitlines()
    assert code == 1 and commands.ran == []
    assert len(lines) <= 24 and max(len(line) for line in lines) <= 100
    assert lines[-1].startswith("1 blocker(s): nothing was deployed")


def test_without_a_blocker_it_builds_deploys_with_the_capabilities_and_publishes(
    session: Any, transformed_template: dict[str, Any], tmp_path: Any
) -> None:
    existing_stack(session, openai_key=KEY)
    saved = tmp_path / "samconfig.toml"
    saved.write_text('[default.deploy.parameters]\nparameter_overrides = "Quotas=5/minute"\n')
    commands = Commands()

    code = main(
        ["--stack-name", STACK, "--samconfig", str(saved)],
        session=session,
        template=transformed_template,
        run=commands,
        out=io.StringIO(),
    )

    assert code == 0
    build, deploy, publish = commands.ran
    assert build[-1] == "--build-only"
    assert deploy[2:5] == ["deploy", "--stack-name", STACK] and "--guided" not in deploy
    assert deploy[deploy.index("--capabilities") + 1] == "CAPABILITY_NAMED_IAM"
    # The region the preflight checked goes to SAM CLI and to the page's publication.
    assert deploy[deploy.index("--region") + 1] == "us-east-1"
    assert list(publish[-5:]) == [
        "deploy.publish_web",
        "--stack-name",
        STACK,
        "--region",
        "us-east-1",
    ]


def test_the_first_deploy_is_guided(
    session: Any, transformed_template: dict[str, Any], tmp_path: Any
) -> None:
    commands = Commands()
    main(
        ["--stack-name", STACK, "--samconfig", str(tmp_path / "none.toml")],
        session=session,
        template=transformed_template,
        run=commands,
        out=io.StringIO(),
    )
    assert "--guided" in commands.ran[1] and "CAPABILITY_NAMED_IAM" in commands.ran[1]
