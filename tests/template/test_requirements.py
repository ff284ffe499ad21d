"""`sam build` installs functions/requirements/<room>.txt for each function (functions/Makefile):
each must be uv.lock's export of that function's dependency group, pinned and hashed, so the
deployed functions run exactly the versions `make test` ran; and each function ships only its
own dependencies (no JWT code in the watcher, no WebSocket client in the token function)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from tests.support.env import ROOT

REQUIREMENTS = ROOT / "functions" / "requirements"
ROOMS = ("api", "watcher")
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)")


def export(room: str) -> list[str]:
    """The Makefile's `requirements` target for one room, minus the output file."""
    return [
        "export", "--frozen", "--no-default-groups", "--only-group", room, "--no-emit-project",
        "--format", "requirements-txt",
    ]  # fmt: skip


def uv() -> str:
    # `uv run` (how `make test` runs pytest) names itself in $UV; else the Makefile's copy.
    for candidate in (
        os.environ.get("UV"),
        str(ROOT / ".tools" / "bin" / "uv"),
        shutil.which("uv"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("uv is needed to compare the requirements with uv.lock (make .venv/.synced)")


def requirement_lines(text: str) -> list[str]:
    """The requirements without uv's header comment (it names the output file)."""
    return [line for line in text.splitlines() if not line.startswith("#")]


def pins(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        match = PIN.match(line)
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def pinned(room: str) -> dict[str, str]:
    return pins((REQUIREMENTS / f"{room}.txt").read_text())


@pytest.mark.parametrize("room", ROOMS)
def test_each_functions_requirements_are_exactly_what_uv_lock_exports(room: str) -> None:
    exported = subprocess.run(
        [uv(), *export(room)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert requirement_lines((REQUIREMENTS / f"{room}.txt").read_text()) == requirement_lines(
        exported
    ), f"functions/requirements/{room}.txt is out of date with uv.lock: run `make requirements`"


@pytest.mark.parametrize("room", ROOMS)
def test_every_requirement_is_pinned_with_hashes(room: str) -> None:
    """pip (and so `sam build`) then refuses any other version or any altered file."""
    text = (REQUIREMENTS / f"{room}.txt").read_text()
    blocks = [b for b in re.split(r"\n(?=[A-Za-z])", text) if PIN.match(b)]
    assert blocks, f"{room}.txt pins nothing"
    for block in blocks:
        assert "--hash=sha256:" in block, f"unhashed requirement: {block.splitlines()[0]}"
    assert not re.search(r"^[A-Za-z0-9_.-]+\s*(>=|~=|<|>|!=)", text, re.M), "a range, not a pin"


def test_each_function_ships_only_what_it_imports() -> None:
    api, watcher = pinned("api"), pinned("watcher")
    assert {"aws-lambda-powertools", "httpx", "pyjwt", "cryptography"} <= set(api)
    assert "websockets" not in api
    assert {"aws-lambda-powertools", "httpx", "websockets"} <= set(watcher)
    assert not {"pyjwt", "cryptography", "cffi"} & set(watcher)


def test_the_runtime_sets_are_the_ones_the_tests_run_with() -> None:
    """Every pinned package is installed in the test environment at the pinned version, and
    the project's runtime dependencies are exactly the two functions' together (what `make dev`
    runs in-process)."""
    for room in ROOMS:
        wanted = pinned(room)
        assert {name: metadata.version(name) for name in wanted} == wanted
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    groups = project["dependency-groups"]
    assert sorted(project["project"]["dependencies"]) == sorted(
        {*groups["api"], *groups["watcher"]}
    )


@pytest.mark.parametrize("room", ROOMS)
def test_no_function_ships_an_aws_sdk(room: str) -> None:
    """boto3/botocore come with the Lambda runtime; bundling them would double the package."""
    assert not {"boto3", "botocore", "s3transfer"} & set(pinned(room))
