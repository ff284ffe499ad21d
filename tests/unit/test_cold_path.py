"""What a mint's cold start loads: the calls routes' modules and clients wait for a call.

A cold mint pays for every module imported and every client built before it answers
(docs/performance.md); these tests keep what only the calls routes use off that path, and the
SnapStart hook (tests/unit/test_snapstart.py) builds it all before a snapshot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from token_vendor.api import deps
from token_vendor.api.calls import CallService

from tests.support.env import BASE_ENV

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
CALLS_ONLY = (
    "token_vendor.api.calls",
    "token_vendor.api.schedule",
    "token_vendor.api.starter",
    "token_vendor.core.ledger",
    "token_vendor.core.ending",
    "token_vendor.core.jobs",
    "token_vendor.api.multipart",  # a multipart call offer's reader
)


def test_importing_the_handler_loads_nothing_only_the_calls_routes_use() -> None:
    code = "import json, sys; import token_vendor.api.app; print(json.dumps(sorted(sys.modules)))"
    env = os.environ | BASE_ENV | {"PYTHONPATH": str(FUNCTIONS)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out))

    assert "token_vendor.api.mint" in loaded  # the check sees the handler's modules
    assert sorted(loaded.intersection(CALLS_ONLY)) == []


def test_the_container_builds_the_calls_use_case_at_its_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # botocore reads credentials when it
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")  # builds a client: none from IMDS
    built: list[str] = []
    container = deps.build_container(BASE_ENV)
    build = container.build_calls

    def counted() -> CallService:
        built.append("calls")
        return build()

    object.__setattr__(container, "build_calls", counted)

    assert built == []
    assert container.calls is container.calls and built == ["calls"]  # once
    assert container.complete() is container and built == ["calls"]
