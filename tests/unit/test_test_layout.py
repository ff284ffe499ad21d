"""The suites' own shape: one home for what more than one test module uses.

- a test module (`test_*.py`), a conftest, or a helper in `tests/support/` imports nothing of
  `tests` but `tests.support...`: never another test module or a conftest (a conftest's
  fixtures reach its suites by pytest, not by import);
- every other Python file under `tests/` is a package marker: helpers live in `tests/support/`;
- moto in-process comes from `tests.support.aws.in_process_aws` (one request at a time), never
  from `moto.mock_aws` itself: the function's threads would otherwise meet inside moto;
- a test that reads one minute window's count by the real clock (a minute limit's refusal, an
  exact remaining count) starts clear of the minute's end (the `one_minute` fixture): else, once
  in a while, its requests straddle two windows and it fails for no fault of the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SUPPORT = TESTS / "support"


def sources() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def dotted(path: Path) -> list[str]:
    """The package a file at `path` belongs to, as dotted parts (`tests`, `tests.unit`, ...)."""
    return ["tests", *path.parent.relative_to(TESTS).parts]


def imported(source: str, package: list[str]) -> list[tuple[int, str]]:
    """Every module of `tests` a file of `package` imports (at any depth, relative imports
    resolved), with its line. `from P import m` imports the module `P.m` when P is a package
    (a folder: `from tests import conftest`), else the module P."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if (TESTS.parent / module.replace(".", "/")).is_dir():
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return [(line, name) for line, name in found if name == "tests" or name.startswith("tests.")]


def allowed(name: str) -> bool:
    return name == "tests.support" or name.startswith("tests.support.")


def violations(path: Path) -> list[str]:
    where = path.relative_to(TESTS.parent)
    return [
        f"{where}:{line}: imports {name}"
        for line, name in imported(path.read_text(), dotted(path))
        if not allowed(name)
    ]


def test_tests_import_only_the_support_package_from_tests() -> None:
    found = [v for path in sources() for v in violations(path)]
    assert found == [], "shared helpers belong in tests/support/:\n" + "\n".join(found)


def test_every_helper_module_lives_in_the_support_package() -> None:
    strays = [
        str(path.relative_to(TESTS.parent))
        for path in sources()
        if SUPPORT not in path.parents
        and "fixtures" not in path.relative_to(TESTS).parts  # data a tool test serves
        and not path.name.startswith("test_")
        and path.name not in ("conftest.py", "__init__.py")
    ]
    assert strays == [], f"helpers outside tests/support/: {strays}"


def test_the_scan_sees_every_way_of_importing_a_test_module() -> None:
    cases = {
        "from tests.unit.test_pricing import usage": ["tests.unit.test_pricing"],
        "from tests.conftest import ORIGIN": ["tests.conftest"],
        "import tests.fakes": ["tests.fakes"],
        "from tests import conftest": ["tests.conftest"],
        "from .test_quota import START": ["tests.unit.test_quota"],
        "from . import conftest": ["tests.unit.conftest"],
        "from tests.support import calls": [],
        "from ..e2e.conftest import shot": ["tests.e2e.conftest"],
        "def f():\n    from tests.e2e.test_web import sign_in": ["tests.e2e.test_web"],
        "from tests.support.identity import Issuer": [],
        "from tests import support": [],
        "import tests.support.csp": [],
        "import json": [],
    }
    for source, refused in cases.items():
        names = [name for _, name in imported(source, ["tests", "unit"])]
        assert [n for n in names if not allowed(n)] == refused, source


# What a test writes when it reads one minute window's count: a minute limit's refusal, or the
# remaining count of the RateLimit header.
MINUTE_COUNTS = ("quota-exceeded", '"minute";r=')


def uses_one_minute(node: ast.AST) -> bool:
    """`node` (a test function or a module) asks for the fixture: as a parameter, or by
    `pytest.mark.usefixtures("one_minute")` on the function or in the module's `pytestmark`."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        names, marks = [a.arg for a in node.args.args], list(node.decorator_list)
    else:
        names, marks = [], list(getattr(node, "body", []))
    return "one_minute" in names or any(
        isinstance(c, ast.Constant) and c.value == "one_minute"
        for mark in marks
        for c in ast.walk(mark)
        if isinstance(mark, ast.expr)
        or (
            isinstance(mark, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in mark.targets)
        )
    )


def test_every_test_that_reads_a_minute_window_starts_clear_of_its_end() -> None:
    unguarded = []
    for path in sources():
        if "unit" in path.parts or not path.name.startswith("test_"):
            continue  # the unit tests move their own clock
        source = path.read_text()
        module = ast.parse(source)
        for node in ast.walk(module):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test_"
            ):
                text = ast.get_source_segment(source, node) or ""
                reads = any(count in text for count in MINUTE_COUNTS)
                if reads and not (uses_one_minute(node) or uses_one_minute(module)):
                    unguarded.append(f"{path.relative_to(TESTS)}::{node.name}")
    assert unguarded == []


def test_only_the_support_package_starts_moto_in_process() -> None:
    direct = []
    for path in sources():
        if path == SUPPORT / "aws.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "moto":
                if any(alias.name == "mock_aws" for alias in node.names):
                    direct.append(f"{path.relative_to(TESTS)}:{node.lineno}")
            elif isinstance(node, ast.Attribute) and node.attr == "mock_aws":
                direct.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    assert direct == []
