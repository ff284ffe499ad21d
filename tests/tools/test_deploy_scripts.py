"""The deploy scripts find the repository from where they live, whatever the caller's directory."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.env import ROOT


@pytest.mark.parametrize(
    "script", ["deploy/deploy.sh", "deploy/destroy.sh", "scripts/template_checks.sh"]
)
def test_each_script_changes_to_the_repository_root(script: str, tmp_path: Path) -> None:
    text = (ROOT / script).read_text()
    cd_line = re.search(r"^cd .*$", text, re.M)
    assert cd_line, f"{script} does not change directory"

    # Only its `cd` line runs, with $0 set as `bash SCRIPT` sets it, from somewhere else.
    where = subprocess.run(
        ["bash", "-c", f"{cd_line.group(0)} && pwd", str(ROOT / script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    assert Path(where) == ROOT
