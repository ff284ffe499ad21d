"""samconfig.toml as SAM CLI reads it for `sam deploy` (its `default` environment): what a
deploy is told beyond the command line, and what the preflight checks against the template."""

from __future__ import annotations

import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMCONFIG = ROOT / "samconfig.toml"


@dataclass(frozen=True)
class SamConfig:
    stack_name: str | None = None
    region: str | None = None
    capabilities: frozenset[str] = frozenset()
    # parameter_overrides: the answers a guided deploy saved (none before the first deploy)
    parameters: dict[str, str] = field(default_factory=dict)


def read(path: Path = SAMCONFIG) -> SamConfig:
    """The `default` environment's deploy settings; a missing file is an empty one."""
    if not path.is_file():
        return SamConfig()
    default = tomllib.loads(path.read_text()).get("default", {})
    merged: dict[str, Any] = {}
    for command in ("global", "deploy"):  # deploy's own settings win, as in SAM CLI
        merged |= (default.get(command) or {}).get("parameters") or {}
    return SamConfig(
        stack_name=merged.get("stack_name"),
        region=merged.get("region"),
        capabilities=frozenset(_words(merged.get("capabilities"))),
        parameters=parse_overrides(merged.get("parameter_overrides")),
    )


def parse_overrides(value: Any) -> dict[str, str]:
    """SAM's `parameter_overrides`: "Key=Value Other=\\"a b\\"" or a list of "Key=Value"."""
    items = _words(value)
    pairs = [item.split("=", 1) for item in items if "=" in item]
    return {key: text for key, text in pairs}


def _words(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return shlex.split(str(value))
