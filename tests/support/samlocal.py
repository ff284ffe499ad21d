"""`sam local` driven by the recipe in docs/local.md: the recipe read line by line, and a runner that
runs its lines against a local stack with this run's stand-ins."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import DEFAULT_PORTS, Stack
from tests.support.env import EVENTS, PLACEHOLDER, ROOT

LOCAL_DOC = ROOT / "docs" / "local.md"  # the recipe, in its section SECTION
API_DOC = ROOT / "docs" / "api.md"  # the curl line, in its section "## Client secrets"
ARTIFACTS = ROOT / "artifacts"
SECTION = "## `sam local` against the local stack"
# The recipe's own stand-ins, replaced by this run's: the stack's env file, token and files.
ENV_FILE = "events/env.json"
TOKEN_COMMAND = "$(make -s token USER=ann SCOPES='openid realtime:client_secrets')"
# The shipped client-secret profile is opt-in: the recipe's token carries its scope.
SECRETS_SCOPES = "openid realtime:client_secrets"
MINT_COPY = "/tmp/mint.json"
COMMAND_TIMEOUT = 300  # a cold `sam build` on a loaded 2-core machine


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"sam local cannot run: {reason}", pytrace=False)  # never a skip in CI
    pytest.skip(f"sam local cannot run: {reason}")


def sh_block(text: str, after: str) -> list[str]:
    """The lines of the first ```sh block after the heading `after`."""
    section = text.split(after, 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return block.replace("\\\n", " ").splitlines()


@dataclass
class Recipe:
    """The recipe's `sam local` lines, sorted by what they do; any other line is an error."""

    setup: list[str] = field(default_factory=list)  # IMAGE=..., ARCH=..., LOCAL=...
    build: str = ""
    token_copy: str = ""  # sed ... events/mint.json > /tmp/mint.json
    invokes: list[str] = field(default_factory=list)
    start_api: str = ""

    @classmethod
    def from_doc(cls, text: str) -> Recipe:
        recipe = cls()
        for line in (raw.split("  #", 1)[0].strip() for raw in sh_block(text, SECTION)):
            if not line or line == "make dev":
                continue  # the test's own stack stands in for `make dev`
            if re.match(r"^[A-Z]+=", line):
                recipe.setup.append(line)
            elif line.startswith("scripts/sam build"):
                recipe.build = line
            elif line.startswith("sed ") and TOKEN_COMMAND in line:
                recipe.token_copy = line
            elif line.startswith("scripts/sam local invoke "):
                recipe.invokes.append(line)
            elif line.startswith("scripts/sam local start-api"):
                recipe.start_api = line
            else:
                raise AssertionError(
                    f"the sam local recipe in docs/local.md has a line no test runs: {line}"
                )
        assert recipe.setup and recipe.build and recipe.token_copy and recipe.start_api
        assert any(f"--event {MINT_COPY}" in line for line in recipe.invokes)
        return recipe

    def invoke_line(self, event: str) -> str:
        """The recipe's invoke line for `event` (a path), from its events/ line."""
        plain = next(line for line in self.invokes if "--event events/" in line)
        return re.sub(r"--event \S+", f"--event {shlex.quote(event)}", plain)


@dataclass
class SamLocal:
    """Runs recipe lines in bash, after the recipe's setup lines, with this run's stand-ins."""

    recipe: Recipe
    stack: Stack
    workdir: Path
    env_file: Path
    timings: dict[str, Any]

    def script(self, line: str) -> str:
        setup = "\n".join(self.recipe.setup).replace(ENV_FILE, str(self.env_file))
        return f"set -euo pipefail\n{setup}\n{line}"

    def env(self) -> dict[str, str]:
        tools = str(ROOT / ".tools" / "bin")
        return os.environ | {"PATH": f"{tools}:{os.environ['PATH']}", "SAM_CLI_TELEMETRY": "0"}

    def run(self, line: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", self.script(line)],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, line: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["bash", "-c", self.script(f"exec {line}")],
            cwd=ROOT,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def event_file(self, name: str) -> Path:
        """events/<name> as the recipe feeds it: through its sed line if it needs a token."""
        if PLACEHOLDER not in (EVENTS / name).read_text():
            return Path("events") / name
        copy = self.workdir / name
        line = (
            self.recipe.token_copy.replace(TOKEN_COMMAND, self.stack.token("ann", SECRETS_SCOPES))
            .replace("events/mint.json", f"events/{name}")
            .replace(MINT_COPY, str(copy))
        )
        done = self.run(line)
        assert done.returncode == 0, done.stderr
        return copy


def env_for(stack: Stack) -> dict[str, Any]:
    """events/env.json with the stack's free ports in place of the defaults."""
    text = (EVENTS / "env.json").read_text()
    for name, default in DEFAULT_PORTS.items():
        for host in ("127.0.0.1", "localhost"):
            text = text.replace(f"{host}:{default}", f"{host}:{stack.ports[name]}")
    env: dict[str, Any] = json.loads(text)
    return env


def lambda_containers() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=sam.cli.container.type=lambda"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return out.split()
