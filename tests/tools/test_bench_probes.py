"""The benchmark's probes run the product as it is today: each one against the bench's
loopback fakes, in this environment, once. A product change the probes do not follow (a scope
the mint now needs, a request the fakes cannot answer) fails here, not in the next `make bench`
on a quiet machine."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.__main__ import CALL_ENV, HERE, ROOT, Fakes

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fakes]:
    running = Fakes(Path(sys.executable), tmp_path_factory.mktemp("bench"))
    yield running
    running.close()


@pytest.mark.parametrize("mode", ["handler", "watcher", "calls"])
def test_each_probe_answers_against_the_fakes(fakes: Fakes, mode: str) -> None:
    env = fakes.env_for(ROOT / "functions") | (CALL_ENV if mode == "calls" else {})
    done = subprocess.run(
        [sys.executable, str(HERE / "probe.py"), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])
