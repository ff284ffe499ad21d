"""The project's pinned SAM CLI, as the deploy program runs it: `scripts/sam` (the one place
its version is pinned) for build and deploy, and its Python (with SAM's translator) for the
template as CloudFormation runs it (scripts/transform_template.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAM_SCRIPT = ROOT / "scripts" / "sam"
TRANSFORM = ROOT / "scripts" / "transform_template.py"


class SamCliError(Exception):
    """SAM CLI could not be run, or failed; the message says which and why."""


def sam_version() -> str:
    found = re.search(r'^SAM_VERSION="([^"]+)"$', SAM_SCRIPT.read_text(), re.M)
    if found is None:
        raise SamCliError(f"{SAM_SCRIPT} pins no SAM_VERSION")
    return found.group(1)


def uvx() -> str:
    """uvx: the repository's own (make installs it in .tools/), else the one on PATH."""
    local = ROOT / ".tools" / "bin" / "uvx"
    found = str(local) if local.is_file() else shutil.which("uvx")
    if not found:
        raise SamCliError("uvx is needed (make .venv/.synced installs it in .tools/)")
    return found


def transformed_template(template: Path = ROOT / "template.yaml") -> dict[str, Any]:
    """The template after SAM's transform, by SAM's own translator (no AWS call)."""
    command = [uvx(), "--quiet", "--from", f"aws-sam-cli=={sam_version()}", "python"]
    done = subprocess.run(  # noqa: S603  our own script, in the pinned SAM CLI's Python
        [*command, str(TRANSFORM), str(template)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ | {"SAM_CLI_TELEMETRY": "0"},
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise SamCliError(f"SAM's transform of {template.name} failed:\n{tail}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result
