"""`sam local` for real: the recipe in docs/local.md, run line by line against a local stack
on free ports, with SAM CLI starting the function in a Lambda runtime container (Docker).

Run by `make sam-local-test` (scripts/sam_local.sh), not by `make test`: it starts dockerd as
root and runs containers. Without Docker the tests fail in CI and are skipped elsewhere,
naming the reason (the browser tests' rule)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.stack import start_stack
from tests.support.env import ROOT
from tests.support.samlocal import (
    ARTIFACTS,
    LOCAL_DOC,
    Recipe,
    SamLocal,
    env_for,
    lambda_containers,
    unavailable,
)


@pytest.fixture(scope="session")
def docker_image() -> str:
    """Docker running and the runtime image built (once); else fail in CI, skip elsewhere."""
    reason = os.environ.get("SAM_LOCAL_UNAVAILABLE")
    if reason:
        unavailable(reason)
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "sam_local.sh"), "image"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        unavailable(lines[-1] if lines else "scripts/sam_local.sh image failed")
    return done.stdout.strip()


@pytest.fixture(scope="session")
def sam_local(docker_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SamLocal]:
    recipe = Recipe.from_doc(LOCAL_DOC.read_text())
    workdir = tmp_path_factory.mktemp("samlocal")
    timings: dict[str, Any] = {"image": docker_image}
    with start_stack(ports="auto", quotas="50/minute,500/day") as stack:
        env_file = workdir / "env.json"
        env_file.write_text(json.dumps(env_for(stack)))
        runner = SamLocal(recipe, stack, workdir, env_file, timings)
        built = runner.run(recipe.build)
        assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
        try:
            yield runner
        finally:
            leftovers = lambda_containers()
            if leftovers:  # tidy even when a test failed half-way
                subprocess.run(["docker", "rm", "-f", *leftovers], capture_output=True, check=False)
            timings["load_average_1min"] = round(os.getloadavg()[0], 2)  # a shared machine
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "sam-local-timings.json").write_text(json.dumps(timings, indent=2) + "\n")
