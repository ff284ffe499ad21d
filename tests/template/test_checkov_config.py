"""checkov's skipped checks live in one place, scripts/checkov.yaml, each with its reason."""

from __future__ import annotations

import re

import yaml

from tests.support.env import ROOT

CONFIG = ROOT / "scripts" / "checkov.yaml"


def test_every_skipped_check_comes_with_a_reason() -> None:
    lines = CONFIG.read_text().splitlines()
    skipped = yaml.safe_load(CONFIG.read_text())["skip-check"]

    assert skipped and len(skipped) == len(set(skipped))
    for check in skipped:
        assert re.fullmatch(r"CKV2?_AWS_\d+", check), check
        at = next(i for i, line in enumerate(lines) if line.strip() == f"- {check}")
        # the comment just above it (a group of checks shares one)
        above = [line.strip() for line in lines[:at] if line.strip()]
        while above and above[-1].startswith("- CKV"):
            above.pop()
        assert above and above[-1].startswith("#") and len(above[-1]) > 20, check


def test_no_check_is_skipped_anywhere_else() -> None:
    assert "checkov:skip" not in (ROOT / "template.yaml").read_text()  # no inline skips
    assert not list(ROOT.glob(".checkov.y*ml"))  # checkov would read one from the root too
    script = (ROOT / "scripts" / "template_checks.sh").read_text()
    assert "--config-file scripts/checkov.yaml" in script and "--skip-check" not in script
    assert re.search(r'CHECKOV_VERSION="\d+\.\d+\.\d+"', script)  # pinned
