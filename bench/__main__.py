"""`make bench`: measure both functions next to their references and write docs/performance.md.

Every figure is measured in this run, on this machine, next to what it is compared with:
0. each function's package, built by functions/Makefile (the target `sam build` runs) for
   this machine's architecture: its unzipped size and largest parts;
1. cold start of each function in its own environment (the runtime's boto3 and that package,
   Python 3.13), versus a bare `import boto3` there: the token function imports its handler
   and serves a first mint, the call watcher imports its handler, builds its container and
   handles one watch event (loopback fakes); and where the token function's goes;
2. warm overhead: CPU per warm request versus one RS256 check + one SigV4 signing;
3. round trips: counted at the fakes, cold and warm, of a mint and of a call setup (with the
   warm call setup's steps of wall time);
4. browser connect time: Start talking -> session.created for the server-owned call and the
   client-secret flow, measured alternately in one browser against one local stack
   (tests/e2e/test_connect_time.py, run by this command);
5. throughput through the local stack (see stack_load.py), when requested;
6. cost per million mints, from public prices and the measured duration;
10. the browser's connect time under each network profile (bench/network.py: both flows, the
   page's origin and the API's own, a warm and a cold function), `--skip-network` skips it.
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
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report
from bench.signing import BenchKey
from devstack.network import PROFILES

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = ROOT / "functions"  # the CodeUri: its Makefile builds each function's package
BENCH_DIR = ROOT / ".bench"
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Function:
    """One Lambda function of template.yaml, as the bench measures it."""

    name: str  # its logical id: functions/Makefile's `build-<name>` target
    room: str  # token_vendor.<room>, with functions/requirements/<room>.txt
    module: str  # its handler's module
    probe: str  # probe.py's mode for its cold start


TOKEN = Function("TokenFunction", "api", "token_vendor.api.app", "handler")
WATCHER = Function("CallWatcherFunction", "watcher", "token_vendor.watcher.app", "watcher")
FUNCTIONS = (TOKEN, WATCHER)


def runtime_python() -> Path:
    """A Python 3.13 venv holding only boto3 (and botocore), at uv.lock's version: what the
    Lambda runtime provides beside a function's package. No dev tool is in it (aiortc's
    pyOpenSSL, for one, would slow `import boto3`)."""
    interpreter = python313()
    if interpreter is None:
        raise SystemExit("bench: Python 3.13 (the Lambda runtime's) is needed: pyenv install 3.13")
    venv = BENCH_DIR / "runtime313"
    python = venv / "bin" / "python"
    boto3 = f"boto3=={locked_version('boto3')}"
    stamp = venv / ".installed"
    if python.exists() and stamp.exists() and stamp.read_text() == boto3:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    uv = _uv()
    subprocess.run([uv, "venv", "-q", "--python", interpreter, str(venv)], check=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), "--compile-bytecode", boto3],
        check=True,
    )
    stamp.write_text(boto3)
    return python


def locked_version(name: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return next(str(p["version"]) for p in lock["package"] if p["name"] == name)


def build_package(function: Function) -> Path:
    """The function's package as `sam build` makes it (functions/Makefile, the target SAM
    runs), for this machine's architecture so that its wheels load here."""
    target = BENCH_DIR / "build" / function.name
    shutil.rmtree(target, ignore_errors=True)
    architecture = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"} | {
        "PIP_ROOT_USER_ACTION": "ignore"
    }
    subprocess.run(
        # make from PATH, as `make bench` itself was found.
        ["make", "--no-print-directory", "-s", "-C", str(FUNCTIONS_DIR),  # noqa: S607
         f"build-{function.name}", f"ARTIFACTS_DIR={target}",
         f"LAMBDA_ARCHITECTURE={architecture}", f"LAMBDA_PYTHON={python313()}"],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return target


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


class Fakes:
    """The loopback server, a key per run and a token it verifies."""

    def __init__(self, python: Path, workdir: Path) -> None:
        self.port = free_port()
        key = BenchKey()
        jwks = workdir / "jwks.json"
        jwks.write_text(json.dumps({"keys": [key.jwk()]}))
        base = f"http://127.0.0.1:{self.port}"
        self.token = key.token(base)
        self.env = os.environ | {
            "BENCH_TOKEN": self.token, "AWS_ENDPOINT_URL": base,
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
            "OPENAI_SECRET_ID": "k", "OPENAI_BASE_URL": f"{base}/v1", "QUOTA_TABLE": "t",
            "QUOTAS": "1000000/minute", "AUTH_ISSUER": base, "AUTH_AUDIENCE": "app",
            "AUTH_JWKS_URL": f"{base}/jwks.json", "POWERTOOLS_METRICS_NAMESPACE": "bench",
            # The round-trip tests' configuration, whose counts section 3 reports: with the
            # operator's controls on and no budget, one GetItem more rides beside the write.
            "USER_CONTROLS": "off",
            "PYTHONPATH": str(ROOT),
        }  # fmt: skip
        self.process = subprocess.Popen(
            [str(python), str(HERE / "fake_services.py"), str(self.port), str(jwks)],
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout and self.process.stdout.readline().strip() == "ready"

    def env_for(self, package: Path) -> dict[str, str]:
        """A function's environment: its package first on the path, as /var/task is."""
        return self.env | {"PYTHONPATH": os.pathsep.join((str(package), str(ROOT)))}

    def counts(self) -> dict[str, int]:
        import urllib.request

        url = f"http://127.0.0.1:{self.port}/__counts"
        with urllib.request.urlopen(url) as response:
            counts: dict[str, int] = json.loads(response.read())
            return counts

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(5)


def probe(python: Path, env: dict[str, str], mode: str, script: str = "probe.py") -> Any:
    done = subprocess.run(
        [str(python), str(HERE / script), mode],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:  # the probe's own words, not only its exit status
        tail = "\n".join(done.stderr.splitlines()[-15:])
        raise SystemExit(f"{script} {mode} failed ({done.returncode}):\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class ColdStarts:
    """One function's cold starts, each run next to a floor taken in its environment."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.cold_trips: dict[str, float] = {}
        self.warm_trips: dict[str, float] = {}
        self.runs = 0

    def add(self, floor: dict[str, float], result: dict[str, Any], before: dict[str, int],
            after: dict[str, int]) -> None:  # fmt: skip
        self.runs += 1
        for name, value in (("floor", floor["ms"]), ("floor_cpu", floor["cpu_ms"])):
            self.samples.setdefault(name, []).append(value)
        names = {"ms": "handler", "cpu_ms": "handler_cpu", "import_ms": "import",
                 "import_cpu_ms": "import_cpu", "container_ms": "container",
                 "container_cpu_ms": "container_cpu", "warm_ms": "warm_wall",
                 "warm_cpu_ms": "warm_cpu"}  # fmt: skip
        for key, name in names.items():
            if key in result:
                self.samples.setdefault(name, []).append(result[key])
        middle = result["counts_after_first"]
        for name in after:
            cold = middle.get(name, 0) - before.get(name, 0)
            self.cold_trips[name] = self.cold_trips.get(name, 0) + cold
            self.warm_trips[name] = self.warm_trips.get(name, 0) + after[name] - middle.get(name, 0)

    def result(self) -> dict[str, object]:
        medians = {name: statistics.median(values) for name, values in self.samples.items()}
        # The services this function called (the fakes count every function's requests).
        met = {k for trips in (self.cold_trips, self.warm_trips) for k, v in trips.items() if v}
        return {name: summary(values) for name, values in self.samples.items()} | {
            # Per request, averaged over the processes: the first (cold) and the second (warm).
            "round_trips": {
                side: {k: trips[k] / self.runs for k in sorted(met)}
                for side, trips in (("cold", self.cold_trips), ("warm", self.warm_trips))
            },
            "ratio": medians["handler"] / medians["floor"],
            "cpu_ratio": medians["handler_cpu"] / medians["floor_cpu"],
        }


def cold_start(
    python: Path, fakes: Fakes, envs: dict[Function, dict[str, str]], runs: int
) -> dict[str, dict[str, object]]:
    """Each function's cold start and its floor, the functions and runs interleaved, so drift
    on the machine hits every figure alike."""
    starts = {function: ColdStarts() for function in envs}
    for _ in range(runs):
        for function, env in envs.items():
            floor = probe(python, env, "boto3")
            before = fakes.counts()
            result = probe(python, env, function.probe)
            starts[function].add(floor, result, before, fakes.counts())
    return {function.name: start.result() for function, start in starts.items()}


def cold_stages(python: Path, env: dict[str, str], runs: int) -> dict[str, object]:
    """Where the token function's cold start goes (bench/stages_probe.py), each stage's median
    over `runs` fresh processes, next to the floor's, interleaved."""
    floor, runs_stages = [], []
    for _ in range(runs):
        floor.append(probe(python, env, "boto3"))
        runs_stages.append(probe(python, env, "", "stages_probe.py"))
    names = list(runs_stages[0])
    return {
        "floor": [statistics.median(f[key] for f in floor) for key in ("ms", "cpu_ms")],
        "stages": {
            name: [statistics.median(r[name][i] for r in runs_stages if name in r) for i in (0, 1)]
            for name in names
        },
        "runs": runs,
    }


# A call setup in the template's defaults: a spend budget, a watcher started per call.
CALL_ENV = {
    "SPEND_LIMITS": "usd/day=2.00",
    "WATCHER_FUNCTION_NAME": "bench-call-watcher",
    "CALL_LIMITS": "concurrent=10,minutes/day=1440",
    "SCHEDULE_GROUP": "bench-calls",
    "SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/bench-hangup",
}


def call_setup(python: Path, env: dict[str, str], runs: int) -> dict[str, object]:
    """The round trips of a cold and a warm call setup, per service, and the warm one's steps
    of wall time (bench.probe's `calls` mode), each run in a fresh process."""
    results = [probe(python, env | CALL_ENV, "calls") for _ in range(runs)]
    # The services a call setup called (the fakes count every function's requests).
    names = sorted(
        {n for r in results for side in ("cold", "warm") for n, v in r[side].items() if v}
    )
    return {
        "cold": {n: statistics.mean(r["cold"].get(n, 0) for r in results) for n in names},
        "warm": {n: statistics.mean(r["warm"].get(n, 0) for r in results) for n in names},
        "steps": [report.steps(r["spans"]) for r in results],
        "hold_ms": results[0]["hold_ms"],
    }


def import_profile(python: Path, env: dict[str, str], module: str) -> list[tuple[str, float]]:
    """Self time of the modules `module` imports beyond what `import boto3` imports."""

    def modules(code: str) -> dict[str, float]:
        result = subprocess.run(
            [str(python), "-X", "importtime", "-c", code],
            env=env,
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
    extra = {name: ms for name, ms in modules(f"import {module}").items() if name not in floor}
    top: dict[str, float] = {}
    for name, ms in extra.items():
        top[name.split(".")[0]] = top.get(name.split(".")[0], 0) + ms
    return sorted(top.items(), key=lambda item: -item[1])[:12]


IMPORT_CHOICES = {
    "import boto3 (the floor)": "import boto3",
    "import botocore.session (what the functions use instead)": "import botocore.session",
    "import boto3 + Powertools' event handler (not used)": (
        "import boto3, aws_lambda_powertools.event_handler"
    ),
}


def import_choices(python: Path, env: dict[str, str], runs: int) -> dict[str, float]:
    """The import-time choices behind the design, each in a fresh process, interleaved."""
    times: dict[str, list[float]] = {name: [] for name in IMPORT_CHOICES}
    for _ in range(runs):
        for name, statement in IMPORT_CHOICES.items():
            code = (
                f"import time; t = time.perf_counter(); {statement}; "
                "print((time.perf_counter() - t) * 1000)"
            )
            out = subprocess.run(
                [str(python), "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout
            times[name].append(float(out))
    return {name: statistics.median(values) for name, values in times.items()}


def own_modules_without_bytecode(
    python: Path, env: dict[str, str], package: Path, runs: int
) -> dict[str, float]:
    """Importing the handler with our modules from source (no .pyc, as Lambda's read-only
    /var/task would do without precompiled files) versus the built package with
    unchecked-hash .pyc, interleaved; the libraries come from the package in both."""
    with tempfile.TemporaryDirectory() as sources:
        # A copy without __pycache__: a developer's tree may hold timestamp-based .pyc.
        shutil.copytree(
            FUNCTIONS_DIR / "token_vendor",
            Path(sources, "token_vendor"),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        variants = {
            "handler import, sources compiled at every start": os.pathsep.join(
                (sources, str(package), str(ROOT))
            ),
            "handler import, built package with unchecked-hash .pyc": env["PYTHONPATH"],
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(runs):
            for name, path in variants.items():
                variant = env | {"PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
                times[name].append(probe(python, variant, "handler")["import_ms"])
    return {name: statistics.median(values) for name, values in times.items()}


def package_size(package: Path) -> dict[str, object]:
    """The package's unzipped size, its size zipped (deflate, as `sam deploy` uploads it)
    and its largest top-level parts (files' apparent sizes)."""

    def size(path: Path) -> int:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

    files = sorted(p for p in package.rglob("*") if p.is_file())
    with tempfile.TemporaryFile() as archive:
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in files:
                zipped.write(path, path.relative_to(package))
        zipped_bytes = archive.tell()
    parts = sorted(((p.name, size(p)) for p in package.iterdir()), key=lambda item: -item[1])
    return {
        "bytes": sum(s for _, s in parts),
        "zipped_bytes": zipped_bytes,
        "files": len(files),
        "largest": parts[:6],
    }


def warm_overhead(python: Path, env: dict[str, str], runs: int) -> dict[str, object]:
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [str(python), str(HERE / "warm_probe.py"), "1500"],
            env=env,
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


def network_profiles() -> dict[str, Any] | None:
    """Section 10 (bench/network.py); None when it cannot run: Playwright is in the full
    environment only (`make bench` on the dev group alone), or Chromium is missing."""
    try:
        from bench import network as network_bench

        print("browser connect time under each network profile ...", flush=True)
        return network_bench.measure(list(PROFILES), 9, 3)
    except Exception as exc:  # a section not measured must not cost the whole report
        print(f"network profiles not measured: {type(exc).__name__}: {exc}", flush=True)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30, help="cold-start runs per function")
    parser.add_argument("--skip-load", action="store_true", help="skip the local-stack load")
    parser.add_argument("--skip-browser", action="store_true", help="skip the browser flows")
    parser.add_argument(
        "--skip-watcher", action="store_true", help="skip the call watcher's cost (~70 s)"
    )
    parser.add_argument(
        "--skip-network", action="store_true", help="skip the network profiles (~12 min)"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    args = parser.parse_args()
    load_before = os.getloadavg()  # other work on the machine skews every figure
    python = runtime_python()
    print("building each function's package (functions/Makefile) ...", flush=True)
    packages = {function: build_package(function) for function in FUNCTIONS}
    with tempfile.TemporaryDirectory() as workdir:
        fakes = Fakes(python, Path(workdir))
        envs = {function: fakes.env_for(packages[function]) for function in FUNCTIONS}
        try:
            print("cold start, both functions ...", flush=True)
            cold = cold_start(python, fakes, envs, args.runs)
            print("where the token function's cold start goes ...", flush=True)
            stages = cold_stages(python, envs[TOKEN], max(args.runs // 3, 5))
            print("call setup round trips ...", flush=True)
            calls = call_setup(python, envs[TOKEN], 3)
            print("import profiles ...", flush=True)
            imports = {f.name: import_profile(python, envs[f], f.module) for f in FUNCTIONS}
            print("warm overhead ...", flush=True)
            warm = warm_overhead(python, envs[TOKEN], 5)
            print("import choices ...", flush=True)
            choices = import_choices(python, envs[TOKEN], 15) | own_modules_without_bytecode(
                python, envs[TOKEN], packages[TOKEN], 10
            )
        finally:
            fakes.close()
    load_after_cold = os.getloadavg()
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
    live = None
    if not args.skip_watcher:
        print("GPT-Live: connect time and the watcher's cost per session-hour ...", flush=True)
        from bench import live_cost

        live = live_cost.measure()
    network = None
    if not args.skip_browser and not args.skip_network:
        network = network_profiles()
    version = subprocess.run(
        [str(python), "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    results = {
        "machine": machine(),
        "load_average": [load_before[0], os.getloadavg()[0]],
        # One, five and fifteen minutes, before and after the in-process figures (sections 1-3).
        "load_average_cold": [list(load_before), list(load_after_cold)],
        "python": version,
        "cold": cold[TOKEN.name],
        "watcher_cold": cold[WATCHER.name],
        "stages": stages,
        "call_setup": calls,
        "imports": imports[TOKEN.name],
        "watcher_imports": imports[WATCHER.name],
        "choices": choices,
        "warm": warm,
        "packages": {f.name: package_size(packages[f]) for f in FUNCTIONS},
        "browser": report.read_browser_measurement(ROOT / "artifacts"),
        "browser_flows": flows,
        "load": report.read_load_measurement(ROOT / "artifacts"),
        "sam_local": report.read_sam_local_measurement(ROOT / "artifacts"),
        "watcher": watcher,
        "live": live,
        "network": network,
    }
    args.output.write_text(report.render(results))
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "bench.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
