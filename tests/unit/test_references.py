"""Every file a doc or a comment names exists in the repository.

A reader follows names: `docs/watcher.md`, `functions/Makefile`, `calls.py`. A name with a
folder must be a path (from the repository's root, from the naming file's folder, or inside
the function's package); a bare file name must be some file of the repository.
Names of files the tools make at run time (build output, state, screenshots) are listed below
with the reason.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "functions" / "token_vendor"
EXTENSIONS = "py|md|json|yaml|yml|js|sh|txt|toml|html|css|lock|cfg"
# A path: at least one folder, then a file name with a known extension.
PATH = re.compile(rf"(?<![\w/.:$<{{-])((?:\.?[\w-]+/)+[\w.-]+\.(?:{EXTENSIONS}))(?![\w/-])")
# A bare file name (no folder).
BARE = re.compile(rf"(?<![\w/.:$<{{-])([\w-]+(?:\.[\w-]+)*\.(?:{EXTENSIONS}))(?![\w/-])")
# What the repository's tools make at run time, not files in git.
MADE_AT_RUN_TIME = (
    ".aws-sam/",  # sam build's output
    ".devstack/",  # make dev's state (make token reads it)
    ".bench/",  # make bench's environments
    "artifacts/",  # screenshots and measurements the tests and the bench write
    "node_modules/",  # npm ci
    ".venv/",
    "web/config.json",  # written by make dev and by the deploy, never committed
    "/tmp/",
)
# Files outside the repository that a doc names on purpose (a user's own files).
NOT_OURS = {"offer.sdp", "answer.sdp", "headers.txt", "session.json", "config.json"}
TEXT = (".md", ".py", ".js", ".sh", ".yaml", ".yml", ".toml", ".html", "Makefile", "run")


@cache
def tracked() -> tuple[str, ...]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return tuple(line for line in out.splitlines() if line)


@cache
def names() -> frozenset[str]:
    return frozenset(Path(p).name for p in tracked())


def readers() -> list[str]:
    return [p for p in tracked() if p.endswith(TEXT)]


def exists(name: str, where: Path) -> bool:
    if any(marker in name for marker in MADE_AT_RUN_TIME) or Path(name).name in NOT_OURS:
        return True
    candidates = (ROOT / name, where.parent / name, PACKAGE / name, ROOT / "functions" / name)
    return any(c.exists() for c in candidates)


def missing_in(text: str, where: Path) -> list[str]:
    text = re.sub(r"https?://\S+", " ", text)  # a URL's path is the other site's
    found = []
    for match in PATH.finditer(text):
        name = match.group(1)
        if not exists(name, where):
            found.append(name)
    for match in BARE.finditer(text):
        name = match.group(1)
        if "/" not in name and name not in names() and name not in NOT_OURS:
            found.append(name)
    return found


def prose(path: Path) -> str:
    """What a reader reads as prose: a doc whole; of code, its comments and docstrings (a
    string in code is data: a test's made-up path, a page's path under web/)."""
    text = path.read_text(errors="replace")
    if path.suffix in (".md", ".html", ".txt"):
        return text
    if path.suffix == ".py":
        parts = [
            tok.string
            for tok in tokenize.generate_tokens(io.StringIO(text).readline)
            if tok.type == tokenize.COMMENT
        ]
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                parts.append(ast.get_docstring(node) or "")
        return "\n".join(parts)
    if path.suffix == ".js":
        return "\n".join(re.findall(r"//[^\n]*|/\*.*?\*/", text, re.S))
    return "\n".join(re.findall(r"#[^\n]*", text))  # shell, YAML, TOML, Makefile


@pytest.mark.parametrize("reader", readers())
def test_every_file_named_exists(reader: str) -> None:
    path = ROOT / reader
    assert missing_in(prose(path), path) == []


def test_the_check_sees_a_name_that_does_not_exist() -> None:
    where = ROOT / "docs" / "design.md"
    assert missing_in("see `no-such-sheet.md` 3c", where) == ["no-such-sheet.md"]
    assert missing_in("see docs/no-such-guide.md", where) == ["docs/no-such-guide.md"]
    assert missing_in("see docs/watcher.md and `calls.py`", where) == []
    assert missing_in("built into .aws-sam/build/TokenFunction/app.py", where) == []
