"""The whole system on one machine: moto, the dev issuer, the OpenAI emulator, the API
stand-in running the real handler, and the web page, each its own process on loopback.

All run as subprocesses: the function reads its environment when imported and keeps state
in its module, as in a Lambda container, so it needs a process of its own; the others follow
suit so that any thread (a pytest test, `make dev`) can start and stop a stack the same way.
Each process leads its own process group, so stopping the stack kills whatever a component
started too, and a terminal's Ctrl-C reaches only this process, which then stops the rest in
order. On Linux the children also get SIGTERM if this process dies without cleaning up.

    with start_stack() as stack:            # free ports
        token = stack.token("alice")
        httpx.post(stack.urls["web"] + "/v1/realtime/client_secrets", ...)

As deployed, the API answers only through the page's distribution (the web server here, which
adds the door's secret as CloudFront does): `urls["web"]` is the API's door for every client,
and `urls["api"]`, API Gateway's stand-in, refuses what skipped it with a 403.
`start_stack(api_door="execute-api")` runs the stack as `ApiDoor=execute-api` deploys it, the
API's own URL open.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import httpx

from devstack import aws
from devstack.net import PortBusy, free_port, port_is_free, wait_for_port
from devstack.network import Profile, parse_network

ROOT = Path(__file__).resolve().parents[1]
STATE_FILE = ROOT / ".devstack" / "state.json"
COMPONENTS = ("aws", "openai", "issuer", "web", "watcher", "api", "scheduler")
NET = "net"  # the delaying proxies of a network profile (devstack/delay.py): started first
DEFAULT_PORTS = {
    "api": 3001, "issuer": 3002, "openai": 3003, "aws": 3004, "scheduler": 3005,
    "watcher": 3006, "web": 5173,
}  # fmt: skip
WATCHER_FUNCTION = "CallWatcherFunction"
WATCHER_CONCURRENCY = 32  # live calls watched at once (Lambda scales out; here, threads)
DEFAULT_QUOTAS = "5/minute,50/day"
DEFAULT_CALL_LIMITS = "concurrent=2,minutes/day=60"
SCHEDULE_GROUP = "devstack-calls"
# moto does not check that the role exists; the function only passes it to Scheduler.
SCHEDULER_ROLE_ARN = f"arn:aws:iam::{aws.ACCOUNT_ID}:role/devstack-scheduler"
SHIPPED_PROFILES = ROOT / "functions" / "token_vendor" / "api" / "profiles.json"
REAL_OPENAI = "https://api.openai.com/v1"
TABLE = "devstack-quota"
SECRET_ID = "devstack/openai-api-key"  # noqa: S105  the secret's name, not a secret
# The secret the page's distribution sends the API (template.yaml's OriginVerifySecret).
ORIGIN_SECRET_ID = "devstack/origin-verify"  # noqa: S105  the secret's name
AUDIENCE = "realtime-token-vendor"
CLIENT_ID = "devstack-web"
SCOPES = "openid realtime:mint"
SECRETS_SCOPE = "realtime:client_secrets"
START_TIMEOUT = 45.0
# What both functions read (template.yaml passes them to both): `extra_env` reaches both.
SHARED_SETTINGS = (
    "SPEND_LIMITS", "PRICES", "CALL_LIMITS", "UNWATCHED_CALLS", "WATCHER_ATTACH_SECONDS",
)  # fmt: skip
STOP_TIMEOUT = 5.0
# Variables of the developer's shell that must not reach the stack: real cloud credentials
# and settings would point the function at a real account.
INHERITED_PREFIXES = (
    "AWS_", "OPENAI_", "POWERTOOLS_", "AUTH_", "QUOTA", "ALLOWED_ORIGINS", "CALL_LIMITS",
    "SCHEDULE", "SCHEDULER_", "WATCHER_", "SPEND_LIMITS", "PRICES", "ORIGIN_SECRET_ID",
    "CALL_ROUTE_QUOTAS", "PLANS_FILE", "PLAN_CLAIM", "DEFAULT_PLAN", "USER_CONTROLS",
)  # fmt: skip
_print_lock = threading.Lock()


class StackError(Exception):
    """The stack could not start; the message says why in a line or a log tail."""

    def __init__(self, message: str, busy: tuple[PortBusy, ...] = ()) -> None:
        super().__init__(message)
        self.busy = busy


class Process:
    """One component: its own process group, its output to a log file (and the terminal)."""

    def __init__(
        self, name: str, command: list[str], env: Mapping[str, str], log: Path, echo: bool
    ) -> None:
        self.name, self.log_path, self.echo = name, log, echo
        self.command, self.env = list(command), dict(env)  # to start it again (`Stack.restart`)
        self._log: IO[str] = log.open("w", encoding="utf-8")
        self.popen = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
            preexec_fn=_die_with_parent,  # only calls prctl (looked up before the fork)
        )
        self.pgid = self.popen.pid  # a new session's leader leads its process group
        self._pump = threading.Thread(target=self._copy_output, name=f"log-{name}", daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._log.write(line)
            self._log.flush()
            if self.echo:
                with _print_lock:
                    sys.stdout.write(f"{self.name:>6} | {line}")
                    sys.stdout.flush()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        self._pump.join(timeout=1)
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signum)

    def group_alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # the group id was reused by someone else's process
            return False
        return True

    def close(self) -> None:
        self._pump.join(timeout=2)
        self._log.close()


def _libc_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()  # looked up before fork: the child only makes the call
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Stack:
    ports: dict[str, int]
    urls: dict[str, str]
    log_dir: Path
    openai_key: str
    host: str = "127.0.0.1"
    web_host: str = "localhost"
    state_file: Path | None = None
    processes: dict[str, Process] = field(default_factory=dict)
    startup_seconds: float = 0.0
    stopped: bool = False
    # Under a network profile (devstack/delay.py): the profile, where each server really
    # listens (the page's and the API's public ports are their delaying proxies'), and the
    # proxies' own ports.
    network: Profile | None = None
    server_ports: dict[str, int] = field(default_factory=dict)
    proxy_ports: list[int] = field(default_factory=list)
    # The URLs the function is given (under a profile, AWS and OpenAI through their proxies).
    function_urls: dict[str, str] = field(default_factory=dict)

    def token(self, user: str, scopes: str | None = None, lifetime: int | None = None) -> str:
        """An access token for `user`, from the running issuer (its dev-only endpoint)."""
        return request_token(self.urls["token"], user, scopes, lifetime)

    def exited(self) -> list[Process]:
        return [p for p in self.processes.values() if not p.alive()]

    def stop(self) -> None:
        """SIGTERM every group, wait, SIGKILL what is left, and check nothing is."""
        if self.stopped:  # once only: a reaped leader's id may belong to someone else later
            return
        self.stopped = True
        running = list(reversed(self.processes.values()))
        for process in running:
            process.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in running:
            try:
                process.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.signal(signal.SIGKILL)
                process.popen.wait()
        for process in running:
            if process.group_alive():  # a grandchild that ignored SIGTERM
                process.signal(signal.SIGKILL)
            process.close()
        if self.state_file is not None:
            with contextlib.suppress(FileNotFoundError):
                if json.loads(self.state_file.read_text()).get("pid") == os.getpid():
                    self.state_file.unlink()

    def restart(self, name: str) -> Process:
        """Starts a component again in a fresh process (after a crash a test caused, as
        Lambda gives a function a fresh environment); its log goes beside the first one's."""
        old = self.processes[name]
        old.signal(signal.SIGKILL)
        old.popen.wait(timeout=STOP_TIMEOUT)
        old.close()
        log = old.log_path.with_name(f"{old.log_path.stem}.restarted{old.log_path.suffix}")
        self.processes[name] = Process(name, old.command, old.env, log, old.echo)
        _wait(self, name, time.monotonic() + START_TIMEOUT)
        return self.processes[name]

    def leftovers(self) -> list[str]:
        """Components with a process still running (empty after `stop`)."""
        return [name for name, p in self.processes.items() if p.group_alive()]

    def write_state(self) -> None:
        assert self.state_file is not None
        state = {
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "ports": self.ports,
            "urls": self.urls,
            "token_url": self.urls["token"],
            "client_id": CLIENT_ID,
            "audience": AUDIENCE,
            "logs": str(self.log_dir),
            "pids": {name: p.popen.pid for name, p in self.processes.items()},
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_suffix(".tmp")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(self.state_file)  # the token CLI never reads half a file

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def request_token(
    token_url: str, user: str, scopes: str | None = None, lifetime: int | None = None
) -> str:
    body: dict[str, Any] = {"user": user}
    if scopes:
        body["scopes"] = scopes.split()
    if lifetime:
        body["lifetime"] = lifetime
    response = httpx.post(token_url, json=body, timeout=5)
    if response.status_code != 200:
        detail = response.json().get("error_description", response.text)
        raise ValueError(f"the issuer refused: {detail}")
    return str(response.json()["access_token"])


def choose_ports(
    ports: Literal["auto"] | Mapping[str, int], host: str, web_host: str
) -> dict[str, int]:
    """Given ports as they are; the others picked free. Busy ports are reported together."""
    given = {} if ports == "auto" else dict(ports)
    unknown = set(given) - set(COMPONENTS)
    if unknown:
        raise StackError(f"unknown components in ports: {sorted(unknown)}")
    chosen = dict(given)
    for name in COMPONENTS:
        while name not in chosen:
            port = free_port(host)
            if port not in chosen.values():
                chosen[name] = port
    if len(set(chosen.values())) != len(chosen):
        raise StackError(f"two components cannot share a port: {chosen}")
    busy = tuple(
        PortBusy(name, web_host if name == "web" else host, port)
        for name, port in chosen.items()
        if not port_is_free(web_host if name == "web" else host, port)
    )
    if busy:
        raise StackError("; ".join(str(b) for b in busy), busy)
    return chosen


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(INHERITED_PREFIXES)}
    return env | {"PYTHONUNBUFFERED": "1", "AWS_EC2_METADATA_DISABLED": "true"}


def _api_env(
    urls: Mapping[str, str], quotas: str, extra: Mapping[str, str], api_door: str = "cloudfront"
) -> dict[str, str]:
    """The function's configuration, as template.yaml would set it in Lambda.

    No AUTH_JWKS_URL: the function finds the keys through discovery, as with Cognito.
    """
    return _base_env() | aws.FAKE_CREDENTIALS | {
        "OPENAI_SECRET_ID": SECRET_ID,
        "OPENAI_BASE_URL": urls["openai"],
        "QUOTA_TABLE": TABLE,
        "QUOTAS": quotas,
        "AUTH_ISSUER": urls["issuer"],
        "AUTH_AUDIENCE": AUDIENCE,
        "AUTH_TOKEN_USE": "access",
        "ALLOWED_ORIGINS": urls["web"],
        "AWS_ENDPOINT_URL": urls["aws"],
        "SCHEDULE_GROUP": SCHEDULE_GROUP,
        "SCHEDULER_ROLE_ARN": SCHEDULER_ROLE_ARN,
        "CALL_LIMITS": DEFAULT_CALL_LIMITS,
        # The local Scheduler fires to the second (AWS: within the minute).
        "SCHEDULER_PRECISION_SECONDS": "1",
        "AWS_REGION": aws.REGION,
        "AWS_DEFAULT_REGION": aws.REGION,
        "POWERTOOLS_SERVICE_NAME": "token-vendor",
        "POWERTOOLS_METRICS_NAMESPACE": "RealtimeTokenVendor",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        # The call watcher: started with Lambda's Invoke API, served by its own gateway.
        "WATCHER_FUNCTION_NAME": WATCHER_FUNCTION,
        "AWS_ENDPOINT_URL_LAMBDA": urls["watcher"],
        # The page's distribution is the API's door (ApiDoor=cloudfront), or there is none.
        "ORIGIN_SECRET_ID": ORIGIN_SECRET_ID if api_door == "cloudfront" else "",
        # As the template sets it: `make ops ARGS="--local ..."` blocks and overrides apply.
        "USER_CONTROLS": "on",
    } | dict(extra)  # fmt: skip


def _watcher_env(urls: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The watcher's configuration, as template.yaml sets it; `extra` (WATCHER_* to shorten
    its hand-overs in tests, and the SHARED_SETTINGS both functions read)."""
    return _base_env() | aws.FAKE_CREDENTIALS | {
        "OPENAI_SECRET_ID": SECRET_ID,
        "OPENAI_BASE_URL": urls["openai"],
        "QUOTA_TABLE": TABLE,
        "CALL_LIMITS": DEFAULT_CALL_LIMITS,  # to settle calls in the same ledger
        "AWS_ENDPOINT_URL": urls["aws"],
        "AWS_ENDPOINT_URL_LAMBDA": urls["watcher"],  # it starts its own successor
        "AWS_REGION": aws.REGION,
        "AWS_DEFAULT_REGION": aws.REGION,
        "POWERTOOLS_SERVICE_NAME": "call-watcher",
        "POWERTOOLS_METRICS_NAMESPACE": "RealtimeTokenVendor",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    } | dict(extra)  # fmt: skip


def start_stack(
    ports: Literal["auto"] | Mapping[str, int] = "auto",
    quotas: str = DEFAULT_QUOTAS,
    extra_env: Mapping[str, str] | None = None,
    *,
    openai_api_key: str | None = None,
    host: str = "127.0.0.1",
    web_host: str = "localhost",
    web_root: Path = ROOT / "web",
    template: Path = ROOT / "template.yaml",
    log_dir: Path | None = None,
    state_file: Path | None = None,
    echo: bool = False,
    issuer_style: Literal["oidc", "cognito"] = "oidc",
    max_call_seconds: int | None = None,
    session_limit_s: float | None = None,
    web_flow: str | None = None,
    watcher_env: Mapping[str, str] | None = None,
    live_usage_every_s: float | None = None,
    api_door: Literal["cloudfront", "execute-api"] = "cloudfront",
    network: str | Profile | None = None,
) -> Stack:
    """Start every component, wait until each answers, and return the running stack.

    With `openai_api_key` the real OpenAI is used and no emulator starts. `extra_env` goes
    to the function (after the stack's own settings, so it can override them: CALL_LIMITS,
    PROFILES_FILE...). `issuer_style="cognito"` runs the dev issuer with Cognito's sign-out
    contract, and tells the page so, as a deploy with the stack's own user pool does.
    `max_call_seconds` shortens every profile's calls (a profiles file written beside the
    logs), so a call visibly ends at its deadline; `session_limit_s` shortens the emulator's
    60-minute cap (a Live session's `expires_at` too), `live_usage_every_s` the emulator's
    cadence of Live usage updates (every second by default). `web_flow` is the page's `flow`
    in config.json ("calls", its default, or "client_secrets"). `watcher_env` goes to the call
    watcher (WATCHER_MAX_SECONDS for quick hand-overs...); the SHARED_SETTINGS in `extra_env`
    reach both functions, as the template passes them to both. `api_door` is the template's
    ApiDoor: "cloudfront" (its default) serves the API only through the web server.
    `network` (a profile's name, devstack/network.py) puts that network's delays on every
    hop: the stack's URLs stay the same, their ports served by delaying proxies.
    """
    started = time.monotonic()
    chosen = choose_ports(ports, host, web_host)
    if not template.is_file():
        raise StackError(f"{template} is missing: the stack takes its table and routes from it")
    emulate = not openai_api_key
    urls = {
        "api": f"http://{host}:{chosen['api']}",
        "issuer": f"http://{host}:{chosen['issuer']}",
        "openai": f"http://{host}:{chosen['openai']}/v1" if emulate else REAL_OPENAI,
        "aws": f"http://{host}:{chosen['aws']}",
        "scheduler": f"http://{host}:{chosen['scheduler']}",
        "watcher": f"http://{host}:{chosen['watcher']}",
        "web": f"http://{web_host}:{chosen['web']}",
    }
    urls["token"] = urls["issuer"] + "/dev/token"
    stack = Stack(
        ports=chosen,
        urls=urls,
        log_dir=log_dir or Path(tempfile.mkdtemp(prefix="devstack-")),
        openai_key=openai_api_key or "sk-devstack-" + secrets.token_urlsafe(24),
        host=host,
        web_host=web_host,
        state_file=state_file,
        network=parse_network(network) if isinstance(network, str | None) else network,
        server_ports=dict(chosen),
    )
    stack.log_dir.mkdir(parents=True, exist_ok=True)
    extra_env = dict(extra_env or {})
    if max_call_seconds is not None:
        extra_env["PROFILES_FILE"] = str(
            short_call_profiles(stack.log_dir, max_call_seconds, extra_env.get("PROFILES_FILE"))
        )
    try:
        shared = {k: v for k, v in extra_env.items() if k in SHARED_SETTINGS}
        _spawn_all(
            stack, quotas, extra_env, web_root, template, echo, emulate, issuer_style,
            session_limit_s, web_flow, shared | dict(watcher_env or {}), live_usage_every_s,
            api_door,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        _wait(stack, "aws", deadline)
        try:
            aws.provision(
                urls["aws"],
                table=TABLE,
                secret_id=SECRET_ID,
                secret_value=stack.openai_key,
                template_path=template,
                schedule_group=SCHEDULE_GROUP,
                origin_secret_id=ORIGIN_SECRET_ID,
            )
        except Exception as exc:
            raise StackError(f"provisioning moto failed: {type(exc).__name__}: {exc}") from exc
        for name in stack.processes:
            _wait(stack, name, deadline)
        stack.startup_seconds = time.monotonic() - started
        if state_file is not None:
            stack.write_state()
    except BaseException:  # Ctrl-C while starting too: leave nothing running
        stack.stop()
        raise
    return stack


def _spawn_all(
    stack: Stack,
    quotas: str,
    extra_env: Mapping[str, str],
    web_root: Path,
    template: Path,
    echo: bool,
    emulate: bool,
    issuer_style: str = "oidc",
    session_limit_s: float | None = None,
    web_flow: str | None = None,
    watcher_env: Mapping[str, str] | None = None,
    live_usage_every_s: float | None = None,
    api_door: str = "cloudfront",
) -> None:
    ports, urls, py = stack.ports, stack.urls, sys.executable
    host, web_host = stack.host, stack.web_host
    # What the function, the watcher and the page's CSP are given: under a network profile,
    # AWS, Lambda's Invoke and OpenAI through their delaying proxies.
    far = dict(urls)
    media: list[str] = []
    if stack.network is not None:
        far = _spawn_network(stack, emulate, echo)
        media = ["--media-link", json.dumps(dataclasses.asdict(stack.network.browser_openai))]
    direct_api = f"http://{host}:{stack.server_ports['api']}"
    stack.function_urls = far
    redirect_uri = urls["web"] + "/"
    web_config = {
        "apiBaseUrl": urls["web"],  # the API under the page's own origin, as deployed
        "issuer": urls["issuer"],
        "clientId": CLIENT_ID,
        "redirectUri": redirect_uri,
        "scopes": SCOPES,
    } | ({"flow": web_flow} if web_flow else {})
    if web_flow == "client_secrets":  # the shipped client-secret profile's opt-in scope
        web_config["scopes"] = f"{SCOPES} {SECRETS_SCOPE}"
    if issuer_style == "cognito":  # as deploy/publish_web.py writes it from the outputs
        web_config |= {
            "cognitoLogoutUrl": urls["issuer"] + "/logout",
            "revocationEndpoint": urls["issuer"] + "/oauth2/revoke",
        }
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "aws": (aws.moto_command(host, ports["aws"]), _base_env()),
        "issuer": (
            [py, "-m", "devstack.idp", "--host", host, "--port", str(ports["issuer"]),
             "--issuer-url", urls["issuer"], "--audience", AUDIENCE, "--client-id", CLIENT_ID,
             "--redirect-uri", redirect_uri,
             *(["--cognito"] if issuer_style == "cognito" else [])],
            _base_env(),
        ),
        "web": (
            [py, "-m", "devstack.web",
             "--host", web_host if stack.server_ports["web"] == ports["web"] else host,
             "--port", str(stack.server_ports["web"]),
             "--root", str(web_root), "--config", json.dumps(web_config),
             "--api-url", direct_api, "--origin", urls["web"], "--template", str(template),
             "--parameter", f"AuthIssuer={urls['issuer']}",
             "--parameter", f"OpenAIBaseUrl={far['openai']}",
             "--parameter", f"ApiDoor={api_door}",
             "--resource", f"OriginVerifySecret={ORIGIN_SECRET_ID}",
             "--aws-endpoint", urls["aws"]],
            _base_env() | aws.FAKE_CREDENTIALS,
        ),
        "api": (
            [py, "-m", "devstack.apigw", "--host", host, "--port", str(stack.server_ports["api"]),
             "--template", str(template)],
            _api_env(far, quotas, extra_env, api_door),
        ),
        # CallWatcherFunction: no routes, only Invoke; one environment per live call.
        "watcher": (
            [py, "-m", "devstack.apigw", "--host", host, "--port", str(ports["watcher"]),
             "--template", str(template), "--invoke-only", "--function-name", WATCHER_FUNCTION,
             "--handler", "token_vendor.watcher.app.handler", "--timeout", "900",
             "--memory", "256", "--concurrency", str(WATCHER_CONCURRENCY)],
            _watcher_env(far, watcher_env or {}),
        ),
        # EventBridge Scheduler's stand-in: fires the function's one-time schedules.
        "scheduler": (
            [py, "-m", "devstack.scheduler", "--host", host, "--port", str(ports["scheduler"]),
             "--aws-endpoint", urls["aws"], "--lambda-endpoint", direct_api,
             "--group", SCHEDULE_GROUP],
            _base_env() | aws.FAKE_CREDENTIALS | {"AWS_DEFAULT_REGION": aws.REGION},
        ),
    }  # fmt: skip
    if emulate:
        limit = [] if session_limit_s is None else ["--session-limit", str(session_limit_s)]
        if live_usage_every_s is not None:
            limit += ["--live-usage-every", str(live_usage_every_s)]
        commands["openai"] = (
            [py, "-m", "devstack.openai_emulator", "--host", host, "--port",
             str(ports["openai"]), *limit, *media],
            _base_env() | {"OPENAI_EMULATOR_SERVER_KEY": stack.openai_key},
        )  # fmt: skip
    for name in COMPONENTS:  # the order they are stopped in is the reverse
        if name in commands:
            command, env = commands[name]
            log = stack.log_dir / f"{name}.log"
            # moto logs every request; its log file is enough.
            stack.processes[name] = Process(name, command, env, log, echo and name != "aws")


def _spawn_network(stack: Stack, emulate: bool, echo: bool) -> dict[str, str]:
    """The delaying proxies of the stack's network profile, in a process of their own; the
    URLs the function is given instead of the servers' own.

    The page's and the API's public ports become their proxies' (so the page's origin, its
    redirect URI and the CORS allow-list stay what they were), the servers moving to fresh
    ports; AWS, Lambda's Invoke and OpenAI get proxies on fresh ports that only the function
    is given. The issuer is not delayed: the page signs in before the click it measures, and
    the function fetches its keys once per container. The scheduler and the web server reach
    the API directly (CloudFront to API Gateway is inside AWS; the browser's hop covers it).
    """
    assert stack.network is not None
    host = stack.host
    for name in ("web", "api"):
        stack.server_ports[name] = _fresh_port(host, stack.ports, stack.server_ports)

    def spare() -> int:
        port = _fresh_port(host, stack.ports, stack.server_ports, stack.proxy_ports)
        stack.proxy_ports.append(port)
        return port

    routes: list[dict[str, Any]] = []

    def route(name: str, listen: tuple[str, int], target: int, hop: str, **more: str) -> None:
        routes.append({"name": name, "listen": listen, "target": (host, target), "hop": hop} | more)

    for name, listen_host in (("web", stack.web_host), ("api", host)):  # the browser's doors
        stack.proxy_ports.append(stack.ports[name])
        route(name, (listen_host, stack.ports[name]), stack.server_ports[name], "browser_api")
    far = dict(stack.urls)
    aws_port, lambda_port = spare(), spare()
    route("aws", (host, aws_port), stack.ports["aws"], "function_aws")
    route("lambda", (host, lambda_port), stack.ports["watcher"], "function_aws")
    far["aws"] = f"http://{host}:{aws_port}"
    far["watcher"] = f"http://{host}:{lambda_port}"
    if emulate:
        openai_port = spare()
        # One door, two callers: the browser's SDP POST (it carries Origin) pays its own link.
        route("openai", (host, openai_port), stack.ports["openai"], "function_openai",
              browser_hop="browser_openai")  # fmt: skip
        far["openai"] = f"http://{host}:{openai_port}/v1"
    spec = {"profile": stack.network.name, "routes": routes}
    stack.processes[NET] = Process(
        NET,
        [sys.executable, "-m", "devstack.delay", "--spec", json.dumps(spec)],
        _base_env(),
        stack.log_dir / f"{NET}.log",
        echo,
    )
    return far


def _fresh_port(host: str, *taken: Mapping[str, int] | list[int]) -> int:
    used = {p for t in taken for p in (t.values() if isinstance(t, Mapping) else t)}
    while (port := free_port(host)) in used:
        pass
    return port


def short_call_profiles(directory: Path, seconds: int, source: str | None = None) -> Path:
    """The profiles file (the shipped one unless `source`) with every profile's calls
    ending after `seconds`: how `make dev` shows a call reaching its deadline."""
    profiles = json.loads(Path(source or SHIPPED_PROFILES).read_text())
    for profile in profiles["profiles"].values():
        profile["max_call_seconds"] = seconds
    path = directory / "profiles.json"
    path.write_text(json.dumps(profiles, indent=2) + "\n")
    return path


def _wait(stack: Stack, name: str, deadline: float) -> None:
    """Until the component answers where it listens (the delaying proxy: on every port)."""
    process = stack.processes[name]
    if name == NET:
        waits = [(stack.host, port) for port in stack.proxy_ports]
    else:
        proxied = stack.server_ports[name] != stack.ports[name]
        host = stack.web_host if name == "web" and not proxied else stack.host
        waits = [(host, stack.server_ports[name])]
    for host, port in waits:
        while not wait_for_port(host, port, time.monotonic() + 0.2):
            if not process.alive():
                raise StackError(
                    f"{name} exited with code {process.popen.returncode} before it was ready "
                    f"(log: {process.log_path}):\n{process.tail()}"
                )
            if time.monotonic() > deadline:
                raise StackError(f"{name} did not open port {port} in time:\n{process.tail()}")


def running_state(state_file: Path = STATE_FILE) -> dict[str, Any]:
    """What a running `make dev` wrote; a missing file means no stack is running."""
    return dict(json.loads(state_file.read_text()))


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP stop the stack. SIGINT is set explicitly because a stack
    started in the background of a non-interactive shell inherits it ignored."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {
        s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
