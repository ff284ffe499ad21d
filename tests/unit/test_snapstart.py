"""SnapStart: clients are built before the snapshot, cached secrets forgotten after restore."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.env import BASE_ENV


def test_hooks_build_before_the_snapshot_and_forget_secrets_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hooks: dict[str, Callable[[], Any]] = {}
    fake = types.ModuleType("snapshot_restore_py")
    fake.register_before_snapshot = lambda fn: hooks.__setitem__("before", fn)  # type: ignore[attr-defined]
    fake.register_after_restore = lambda fn: hooks.__setitem__("after", fn)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", fake)
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    app = importlib.reload(importlib.import_module("token_vendor.api.app"))

    container = hooks["before"]()  # sockets are blocked here: building touches no network
    # What a mint leaves for the calls routes' first request is built before the snapshot too.
    assert "calls" in vars(container)
    container.openai_key._cached = object()  # as if a key had been read before the snapshot
    hooks["after"]()

    assert container.settings.core.table == BASE_ENV["QUOTA_TABLE"]
    assert container.openai_key._cached is None
    monkeypatch.delitem(sys.modules, "snapshot_restore_py")
    importlib.reload(app)
