"""The package's shape, held by its imports: two functions over one shared core.

- `token_vendor.core` imports neither function's room: both build on it;
- `token_vendor.watcher` never imports `token_vendor.api`, nor the API the watcher: each
  function's package holds its own room and the core only (functions/Makefile), so an import
  across would fail in Lambda, not here;
- each room imports only the third-party packages its function ships
  (functions/requirements/<room>.txt): no JWT code in the watcher or the core, no WebSocket
  client in the API or the core.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "functions" / "token_vendor"
ROOMS = ("core", "api", "watcher")
# What each room may import of the other rooms, and which third-party packages it may not.
MAY_IMPORT = {"core": {"core"}, "api": {"core", "api"}, "watcher": {"core", "watcher"}}
FORBIDDEN_LIBRARIES = {
    "core": {"jwt", "cryptography", "websockets", "aws_lambda_powertools"},
    "api": {"websockets"},
    "watcher": {"jwt", "cryptography"},
}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def room_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0]


def imported(source: str, relative: Path) -> set[str]:
    """Every module a file at `relative` (inside the package) imports, as a dotted name,
    relative imports resolved."""
    package = ["token_vendor", *relative.parent.parts]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source, str(relative))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            # `from . import x` / `from ..core import aws`: the names may be modules too.
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def violations(room: str, names: set[str]) -> list[str]:
    """The imports a module of `room` may not make: another room's, or a library its
    function does not ship."""
    crossing = [
        name
        for name in names
        if name.startswith("token_vendor.")
        and name.split(".")[1] in ROOMS
        and name.split(".")[1] not in MAY_IMPORT[room]
    ]
    libraries = [name for name in names if name.split(".")[0] in FORBIDDEN_LIBRARIES[room]]
    return sorted(crossing + libraries)


def test_every_module_lives_in_one_of_the_three_rooms() -> None:
    strays = [
        str(p.relative_to(PACKAGE))
        for p in modules()
        if p.parent == PACKAGE and p.name != "__init__.py"
    ]
    assert strays == []
    assert {p.relative_to(PACKAGE).parts[0] for p in modules() if p.parent != PACKAGE} == set(ROOMS)


@pytest.mark.parametrize(
    "path",
    [p for p in modules() if p.parent != PACKAGE],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_imports_point_only_inward(path: Path) -> None:
    relative = path.relative_to(PACKAGE)
    assert violations(room_of(path), imported(path.read_text(), relative)) == []


def test_the_check_sees_what_crosses() -> None:
    """The check itself: a watcher module importing the API, or PyJWT, is refused; its own
    room and the core are not."""
    source = (
        "from ..api.calls import CallService\nfrom ..core import aws\nfrom . import guard\n"
        "import jwt.exceptions\n"
    )
    names = imported(source, Path("watcher/probe.py"))
    assert {
        "token_vendor.api.calls",
        "token_vendor.core.aws",
        "token_vendor.watcher.guard",
    } <= names
    assert violations("watcher", names) == [
        "jwt.exceptions",
        "token_vendor.api.calls",
        "token_vendor.api.calls.CallService",
    ]
    assert violations("core", imported("from ..watcher import watch\n", Path("core/x.py"))) == [
        "token_vendor.watcher",
        "token_vendor.watcher.watch",
    ]
