"""`sam build` installs functions/requirements.txt: it must be uv.lock's runtime set, pinned
and hashed, so the deployed function runs exactly the versions `make test` ran."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "functions" / "requirements.txt"
# The Makefile's `requirements` target, minus the output file.
EXPORT = [
    "export", "--frozen", "--no-default-groups", "--no-emit-project", "--format", "requirements-txt"
]  # fmt: skip
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)")


def uv() -> str:
    # `uv run` (how `make test` runs pytest) names itself in $UV; else the Makefile's copy.
    for candidate in (
        os.environ.get("UV"),
        str(ROOT / ".tools" / "bin" / "uv"),
        shutil.which("uv"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("uv is needed to compare requirements.txt with uv.lock (make .venv/.synced)")


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


def test_requirements_txt_is_exactly_what_uv_lock_exports() -> None:
    exported = subprocess.run(
        [uv(), *EXPORT], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert requirement_lines(REQUIREMENTS.read_text()) == requirement_lines(exported), (
        "functions/requirements.txt is out of date with uv.lock: run `make requirements`"
    )


def test_every_requirement_is_pinned_with_hashes() -> None:
    """pip (and so `sam build`) then refuses any other version or any altered file."""
    text = REQUIREMENTS.read_text()
    blocks = [b for b in re.split(r"\n(?=[A-Za-z])", text) if PIN.match(b)]
    assert blocks, "requirements.txt pins nothing"
    for block in blocks:
        assert "--hash=sha256:" in block, f"unhashed requirement: {block.splitlines()[0]}"
    assert not re.search(r"^[A-Za-z0-9_.-]+\s*(>=|~=|<|>|!=)", text, re.M), "a range, not a pin"


def test_the_runtime_set_is_the_one_the_tests_run_with() -> None:
    """Every pinned package is installed in the test environment at the pinned version."""
    pinned = pins(REQUIREMENTS.read_text())
    for wanted in ("aws-lambda-powertools", "httpx", "pyjwt", "cryptography"):
        assert wanted in pinned
    installed = {name: metadata.version(name) for name in pinned}
    assert installed == pinned


def test_the_package_ships_no_aws_sdk() -> None:
    """boto3/botocore come with the Lambda runtime; bundling them would double the package."""
    assert not {"boto3", "botocore", "s3transfer"} & set(pins(REQUIREMENTS.read_text()))
