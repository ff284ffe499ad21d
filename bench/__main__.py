"""`make bench`: measure the function next to its references and write docs/performance.md.

Every figure is measured in this run, on this machine, next to what it is compared with:
1. cold start: fresh process, import the handler, serve the first request (loopback fakes),
   versus a bare `import boto3` in the same function-only environment (Python 3.13);
2. warm overhead: CPU per warm request versus one RS256 check + one SigV4 signing;
3. round trips: counted at the fakes, cold and warm, of a mint and of a call setup (with the
   warm call setup's steps of wall time);
4. browser connect time: Start talking -> session.created for the server-owned call and the
   client-secret flow, measured alternately in one browser against one local stack
   (tests/e2e/test_connect_time.py, run by this command);
5. throughput through the local stack (see stack_load.py), when requested;
6. cost per million mints, from public prices and the measured duration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import report
from bench.signing import BenchKey

ROOT = Path(__file__).resolve().parents[1]
FUNCTION_DIR = ROOT / "functions"  # the CodeUri: requirements.txt and the token_vendor package
BENCH_DIR = ROOT / ".bench"
HERE = Path(__file__).resolve().parent


def function_env_python() -> Path:
    """A venv with only the function's runtime dependencies and boto3, as in Lambda."""
    venv = BENCH_DIR / "fn313"
    python = venv / "bin" / "python"
    if python.exists():
        return python
    interpreter = python313() or sys.executable
    uv = _uv()
    subprocess.run([uv, "venv", "-q", "--python", interpreter, str(venv)], check=True)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(python),
            "--compile-bytecode",
            "-r",
            str(FUNCTION_DIR / "requirements.txt"),
            "boto3",
        ],
        check=True,
    )
    return python


def python313() -> str | None:
    """The Lambda runtime's Python; a pyenv shim may exist without working, so try each."""
    for candidate in (_pyenv("3.13"), shutil.which("python3.13")):
        if (
            candidate
            and subprocess.run(
                [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 13)"],
                capture_output=True,
            ).returncode
            == 0
        ):
            return candidate
    return None


def _uv() -> str:
    return shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")


def _pyenv(version: str) -> str | None:
    try:
        root = subprocess.run(
            # pyenv is looked up on PATH on purpose; without it the bench uses another Python.
            ["pyenv", "root"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    found = sorted(Path(root, "versions").glob(f"{version}*/bin/python{version}"))
    return str(found[-1]) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def compiled_package(python: Path) -> Path:
    """The function's files as the build ships them: with unchecked-hash bytecode, because
    Lambda's /var/task is read-only and zip mtimes cannot validate timestamp-based .pyc."""
    package = BENCH_DIR / "package"
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(FUNCTION_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            str(python),
            "-m",
            "compileall",
            "-q",
            "--invalidation-mode",
            "unchecked-hash",
            str(package),
        ],
        check=True,
    )
    return package


class Fakes:
    """The loopback server, a key per run and a token it verifies."""

    def __init__(self, python: Path, workdir: Path, package: Path) -> None:
        self.port = free_port()
        key = BenchKey()
        jwks = workdir / "jwks.json"
        jwks.write_text(json.dumps({"keys": [key.jwk()]}))
        base = f"http://127.0.0.1:{self.port}"
        self.token = key.token(base)
        self.env = os.environ | {
            "FUNCTION_DIR": str(package), "BENCH_TOKEN": self.token, "AWS_ENDPOINT_URL": base,
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
            "OPENAI_SECRET_ID": "k", "OPENAI_BASE_URL": f"{base}/v1", "QUOTA_TABLE": "t",
            "QUOTAS": "1000000/minute", "AUTH_ISSUER": base, "AUTH_AUDIENCE": "app",
            "AUTH_JWKS_URL": f"{base}/jwks.json", "POWERTOOLS_METRICS_NAMESPACE": "bench",
            "PYTHONPATH": str(ROOT),
        }  # fmt: skip
        self.process = subprocess.Popen(
            [str(python), str(HERE / "fake_services.py"), str(self.port), str(jwks)],
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout and self.process.stdout.readline().strip() == "ready"

    def counts(self) -> dict[str, int]:
        import urllib.request

        url = f"http://127.0.0.1:{self.port}/__counts"
        with urllib.request.urlopen(url) as response:
            counts: dict[str, int] = json.loads(response.read())
            return counts

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(5)


def probe(python: Path, env: dict[str, str], mode: str) -> dict[str, Any]:
    out = subprocess.run(
        [str(python), str(HERE / "probe.py"), mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def cold_start(python: Path, fakes: Fakes, runs: int) -> dict[str, object]:
    floor, handler, imports, warm = [], [], [], []
    cold_trips: dict[str, int] = {}
    warm_trips: dict[str, int] = {}
    for _ in range(runs):  # interleaved, so drift on the machine hits both alike
        floor.append(probe(python, fakes.env, "boto3")["ms"])
        before = fakes.counts()
        result = probe(python, fakes.env, "handler")
        after = fakes.counts()
        handler.append(result["ms"])
        imports.append(result["import_ms"])
        warm.append(result["warm_ms"])
        middle = result["counts_after_first"]
        for name in after:
            cold_trips[name] = cold_trips.get(name, 0) + middle.get(name, 0) - before.get(name, 0)
            warm_trips[name] = warm_trips.get(name, 0) + after[name] - middle.get(name, 0)
    return {
        "floor": summary(floor),
        "handler": summary(handler),
        "import": summary(imports),
        "warm_wall": summary(warm),
        # Per request, averaged over the processes: the first (cold) and the second (warm).
        "round_trips": {
            "cold": {k: v / runs for k, v in cold_trips.items()},
            "warm": {k: v / runs for k, v in warm_trips.items()},
        },
        "ratio": statistics.median(handler) / statistics.median(floor),
    }


# A call setup in the template's defaults: a spend budget, a watcher started per call.
CALL_ENV = {
    "SPEND_LIMITS": "usd/day=2.00",
    "WATCHER_FUNCTION_NAME": "bench-call-watcher",
    "CALL_LIMITS": "concurrent=10,minutes/day=1440",
    "SCHEDULE_GROUP": "bench-calls",
    "SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/bench-hangup",
}


def call_setup(python: Path, fakes: Fakes, runs: int) -> dict[str, object]:
    """The round trips of a cold and a warm call setup, per service, and the warm one's steps
    of wall time (bench.probe's `calls` mode), each run in a fresh process."""
    results = [probe(python, fakes.env | CALL_ENV, "calls") for _ in range(runs)]
    names = sorted({n for r in results for side in ("cold", "warm") for n in r[side]})
    return {
        "cold": {n: statistics.mean(r["cold"].get(n, 0) for r in results) for n in names},
        "warm": {n: statistics.mean(r["warm"].get(n, 0) for r in results) for n in names},
        "steps": [report.steps(r["spans"]) for r in results],
        "hold_ms": results[0]["hold_ms"],
    }


def import_profile(python: Path, fakes: Fakes) -> list[tuple[str, float]]:
    """Self time of the modules the handler imports beyond what `import boto3` imports."""

    def modules(code: str) -> dict[str, float]:
        result = subprocess.run(
            [str(python), "-X", "importtime", "-c", code],
            env=fakes.env,
            capture_output=True,
            text=True,
            check=True,
        )
        times = {}
        for line in result.stderr.splitlines():
            if line.startswith("import time:") and "|" in line and "self" not in line:
                self_us, _, name = (part.strip() for part in line[len("import time:") :].split("|"))
                times[name] = float(self_us) / 1000
        return times

    floor = modules("import boto3")
    function_dir = fakes.env["FUNCTION_DIR"]
    ours = modules(f"import sys; sys.path.insert(0, {function_dir!r}); import token_vendor.app")
    extra = {name: ms for name, ms in ours.items() if name not in floor}
    top: dict[str, float] = {}
    for name, ms in extra.items():
        top[name.split(".")[0]] = top.get(name.split(".")[0], 0) + ms
    return sorted(top.items(), key=lambda item: -item[1])[:12]


IMPORT_CHOICES = {
    "import boto3 (the floor)": "import boto3",
    "import botocore.session (what the function uses instead)": "import botocore.session",
    "import boto3 + Powertools' event handler (not used)": (
        "import boto3, aws_lambda_powertools.event_handler"
    ),
}


def import_choices(python: Path, runs: int) -> dict[str, float]:
    """The import-time choices behind the design, each in a fresh process, interleaved."""
    times: dict[str, list[float]] = {name: [] for name in IMPORT_CHOICES}
    for _ in range(runs):
        for name, statement in IMPORT_CHOICES.items():
            code = (
                f"import time; t = time.perf_counter(); {statement}; "
                "print((time.perf_counter() - t) * 1000)"
            )
            out = subprocess.run(
                [str(python), "-c", code], capture_output=True, text=True, check=True
            ).stdout
            times[name].append(float(out))
    return {name: statistics.median(values) for name, values in times.items()}


def own_modules_without_bytecode(python: Path, fakes: Fakes, runs: int) -> dict[str, float]:
    """Importing the handler from the source tree (no .pyc, as Lambda's read-only /var/task
    would do without precompiled files) versus the built package with unchecked-hash .pyc."""
    results = {}
    for name, directory in (
        ("handler import, sources compiled at every start", FUNCTION_DIR),
        ("handler import, built package with unchecked-hash .pyc", Path(fakes.env["FUNCTION_DIR"])),
    ):
        env = fakes.env | {"FUNCTION_DIR": str(directory), "PYTHONDONTWRITEBYTECODE": "1"}
        results[name] = statistics.median(
            probe(python, env, "handler")["import_ms"] for _ in range(runs)
        )
    return results


def package_size() -> dict[str, object]:
    built = ROOT / ".aws-sam" / "build" / "TokenFunction"
    source = "sam build artifact (.aws-sam/build/TokenFunction)"
    temp = None
    if not built.exists():
        temp = Path(tempfile.mkdtemp())
        built = temp / "package"
        subprocess.run(
            [
                _uv(),
                "pip",
                "install",
                "-q",
                "--target",
                str(built),
                "--python-platform",
                "aarch64-manylinux2014",
                "--python-version",
                "3.13",
                "-r",
                str(FUNCTION_DIR / "requirements.txt"),
            ],
            check=True,
        )
        shutil.copytree(
            FUNCTION_DIR, built, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
        )
        source = (
            "pip install --target for arm64/3.13 + the function's files (no sam build artifact)"
        )
    total = sum(p.stat().st_size for p in built.rglob("*") if p.is_file())
    top = sorted(
        (
            (d.name, sum(p.stat().st_size for p in d.rglob("*") if p.is_file()))
            for d in built.iterdir()
            if d.is_dir()
        ),
        key=lambda item: -item[1],
    )[:6]
    if temp:
        shutil.rmtree(temp)
    return {"bytes": total, "source": source, "largest": top}


def warm_overhead(python: Path, fakes: Fakes, runs: int) -> dict[str, object]:
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [str(python), str(HERE / "warm_probe.py"), "1500"],
            env=fakes.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    request = statistics.median(r["request_us"] for r in results)
    reference = statistics.median(r["reference_us"] for r in results)
    return {
        "request_us": request,
        "reference_us": reference,
        "ratio": request / reference,
        "verify_us": statistics.median(r["verify_us"] for r in results),
        "sign_us": statistics.median(r["sign_us"] for r in results),
        "parts": {
            k: statistics.median(r["parts"][k] for r in results) for k in results[0]["parts"]
        },
        "runs": runs,
    }


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"median": statistics.median(ordered), "p99": p99, "min": ordered[0], "n": len(ordered)}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {cpu}"


def browser_flows() -> dict[str, object] | None:
    """Both flows' connect time, measured now by the browser test (None if it cannot run)."""
    out = ROOT / "artifacts" / "browser-flows.json"
    out.unlink(missing_ok=True)  # a figure from an earlier run must not pass for this one's
    print("browser connect time, both flows ...", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/e2e/test_connect_time.py"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0 or not out.exists():
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        print(f"browser flows not measured (exit {done.returncode}):\n{tail}", flush=True)
        return None
    return dict(json.loads(out.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30, help="cold-start pairs")
    parser.add_argument("--skip-load", action="store_true", help="skip the local-stack load")
    parser.add_argument("--skip-browser", action="store_true", help="skip the browser flows")
    parser.add_argument(
        "--skip-watcher", action="store_true", help="skip the call watcher's cost (~70 s)"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]  # other work on the machine skews every figure
    python = function_env_python()
    with tempfile.TemporaryDirectory() as workdir:
        fakes = Fakes(python, Path(workdir), compiled_package(python))
        try:
            print("cold start ...", flush=True)
            cold = cold_start(python, fakes, args.runs)
            print("call setup round trips ...", flush=True)
            calls = call_setup(python, fakes, 3)
            print("import profile ...", flush=True)
            imports = import_profile(python, fakes)
            print("warm overhead ...", flush=True)
            warm = warm_overhead(python, fakes, 5)
            print("import choices ...", flush=True)
            choices = import_choices(python, 15) | own_modules_without_bytecode(python, fakes, 10)
        finally:
            fakes.close()
    flows = None if args.skip_browser else browser_flows()
    if not args.skip_load:
        print("throughput through the local stack ...", flush=True)
        from bench import stack_load

        stack_load.main()
    watcher = None
    if not args.skip_watcher:
        print("the call watcher's cost per call-hour ...", flush=True)
        from bench import watcher_cost

        watcher = watcher_cost.measure()
    print("package size ...", flush=True)
    package = package_size()
    version = subprocess.run(
        [str(python), "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    results = {
        "machine": machine(),
        "load_average": [load_before, os.getloadavg()[0]],
        "python": version,
        "cold": cold,
        "call_setup": calls,
        "imports": imports,
        "choices": choices,
        "warm": warm,
        "package": package,
        "browser": report.read_browser_measurement(ROOT / "artifacts"),
        "browser_flows": flows,
        "load": report.read_load_measurement(ROOT / "artifacts"),
        "sam_local": report.read_sam_local_measurement(ROOT / "artifacts"),
        "watcher": watcher,
    }
    args.output.write_text(report.render(results))
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "bench.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
