"""Fixtures: the function imported the way Lambda imports it (tests.support puts its CodeUri
on the path), moto for AWS, a fake internet. What they are built from lives in tests/support/."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import pytest_socket

from devstack.lambda_events import LambdaContext, http_event
from tests.support.aws import Aws, moto_aws, use_fake_aws
from tests.support.clock import clear_of_a_minute_boundary
from tests.support.env import BASE_ENV, ORIGIN, ROOT
from tests.support.handler import Reply, invoke
from tests.support.identity import Issuer
from tests.support.internet import FakeInternet
from tests.support.logs import LogCapture

# make test spreads the suites over two workers (pytest-xdist, --dist loadgroup), a test file
# whole on one worker (its module-scoped stack, browser or process pool starts once). These
# files form one group, run one after another on one worker: the concurrency batteries keep
# both cores busy with eight processes each, and the watcher's and the browser's tests time
# what the stack does (a deadline 10 s after a call starts, an undo within a second), so
# none of them meets a battery on the other worker. The group comes first (make test keeps
# the collection's order, --no-loadscope-reorder): it is the longest, and its files run in
# this order, the batteries first and the watcher's timings last, when the other worker has
# run out of files and left both cores to them.
ONE_AT_A_TIME = (
    "tests/security/test_quota_concurrency.py",
    "tests/security/test_call_concurrency.py",
    "tests/e2e/test_web.py",
    "tests/e2e/test_hang_up.py",
    "tests/e2e/test_production_headers.py",
    "tests/e2e/test_sign_out.py",
    "tests/e2e/test_preflight_cost.py",
    "tests/e2e/test_connect_time.py",
    "tests/e2e/test_calls.py",
    "tests/e2e/test_watcher.py",
    "tests/integration/test_watcher_spend.py",
    "tests/integration/test_watcher_calls.py",
    "tests/integration/test_watcher.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def place(path: str) -> int:
        """Where the file runs in the group (a browser test file not listed: with the
        others); len(ONE_AT_A_TIME) for the files outside it."""
        if path in ONE_AT_A_TIME:
            return ONE_AT_A_TIME.index(path)
        if path.startswith("tests/e2e/"):
            return ONE_AT_A_TIME.index("tests/e2e/test_web.py")
        return len(ONE_AT_A_TIME)

    def path(item: pytest.Item) -> str:
        return item.path.relative_to(ROOT).as_posix()

    items.sort(key=lambda item: place(path(item)))  # stable: each file keeps its order
    for item in items:
        group = "one-at-a-time" if place(path(item)) < len(ONE_AT_A_TIME) else path(item)
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def transformed_template() -> dict[str, Any]:
    """template.yaml after SAM's transform, by SAM's own translator (the pinned SAM CLI, run
    through uvx as `make template-check` runs it): what CloudFormation deploys."""
    from deploy.sam_cli import transformed_template as transform

    return transform()


@pytest.fixture
def app_module() -> Any:
    return importlib.import_module("token_vendor.api.app")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    use_fake_aws(monkeypatch)
    with moto_aws() as fake:
        yield fake


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def internet(issuer: Issuer) -> FakeInternet:
    return FakeInternet(issuer)


@pytest.fixture
def make_handler(
    app_module: Any, aws: Aws, internet: FakeInternet
) -> Callable[..., Callable[..., dict[str, Any]]]:
    """A real handler (app.create_handler) wired to moto and the fake internet."""
    deps = importlib.import_module("token_vendor.api.deps")

    def make(**env: str) -> Callable[..., dict[str, Any]]:
        settings_env = BASE_ENV | env
        return app_module.create_handler(
            lambda: deps.build_container(
                settings_env,
                http=internet.client(),
                dynamodb=aws.dynamodb,
                secretsmanager=aws.secretsmanager,
                scheduler=aws.scheduler,
                log=app_module.logger,
            )
        )

    return make


@pytest.fixture
def one_minute() -> None:
    """For a test whose requests must fall in one minute window of the real clock (a minute
    limit reached, an exact remaining count): it starts with at least 5 s of the minute left.
    tests/unit/test_test_layout.py asks it of every test that reads a minute window's count."""
    clear_of_a_minute_boundary(5.0)


@pytest.fixture
def handler(make_handler: Callable[..., Any]) -> Callable[..., dict[str, Any]]:
    return make_handler()


@pytest.fixture
def mint(handler: Callable[..., Any], issuer: Issuer) -> Callable[..., Reply]:
    """POST /v1/realtime/client_secrets with a valid token unless told otherwise."""

    def call(
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: str | None = None,
        context: LambdaContext | None = None,
    ) -> Reply:
        all_headers = {"authorization": f"Bearer {token or issuer.token()}", "origin": ORIGIN}
        if body is not None or raw is not None:
            all_headers["content-type"] = "application/json"
        all_headers.update(headers or {})
        all_headers = {k: v for k, v in all_headers.items() if v is not None}
        text = raw if raw is not None else (json.dumps(body) if body is not None else None)
        return invoke(handler, http_event(headers=all_headers, body=text), context)

    return call


@pytest.fixture
def logs(app_module: Any) -> Iterator[LogCapture]:
    capture = LogCapture(app_module)
    yield capture
    capture.close()


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest) -> Iterator[None]:
    """No test reaches a socket unless it says so: moto and MockTransport stand in for the
    world. Tests marked `stack` or `browser` use real loopback sockets."""
    if request.node.get_closest_marker("stack") or request.node.get_closest_marker("browser"):
        yield
        return
    pytest_socket.disable_socket(allow_unix_socket=True)
    yield
    pytest_socket.enable_socket()
