"""`python -m devstack` (`make dev`): the whole system locally until Ctrl-C.

Ports come from flags or DEVSTACK_<NAME>_PORT; a busy one is a one-line error (exit 2).
With OPENAI_API_KEY set, the real OpenAI is used instead of the emulator.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from devstack.network import PROFILES, Profile, parse_network
from devstack.stack import (
    DEFAULT_CALL_LIMITS,
    DEFAULT_PORTS,
    DEFAULT_QUOTAS,
    ROOT,
    STATE_FILE,
    Stack,
    StackError,
    signals_as_interrupts,
    start_stack,
)

EXIT_PORT_BUSY = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    for name, port in DEFAULT_PORTS.items():
        env = f"DEVSTACK_{name.upper()}_PORT"
        parser.add_argument(
            f"--{name}-port", type=int, default=int(os.environ.get(env, port)), help=f"env {env}"
        )
    parser.add_argument(
        "--quotas", default=os.environ.get("DEVSTACK_QUOTAS", DEFAULT_QUOTAS), help="QUOTAS"
    )
    parser.add_argument(
        "--call-limits",
        default=os.environ.get("DEVSTACK_CALL_LIMITS", DEFAULT_CALL_LIMITS),
        help="CALL_LIMITS (env DEVSTACK_CALL_LIMITS)",
    )
    parser.add_argument(
        "--spend-limits",
        default=os.environ.get("DEVSTACK_SPEND_LIMITS", "usd/day=2.00"),
        help="SPEND_LIMITS, what each user's calls may cost a day, metered by the call "
        "watcher (env DEVSTACK_SPEND_LIMITS; e.g. usd/day=0.10 to hear the budget's goodbye: "
        "a call starts only with one response like the profile's dearest left, ~0.07 USD)",
    )
    parser.add_argument(
        "--max-call-seconds",
        type=int,
        default=int(os.environ["DEVSTACK_MAX_CALL_SECONDS"])
        if os.environ.get("DEVSTACK_MAX_CALL_SECONDS")
        else None,
        help="end every call after this many seconds, to watch the server hang up "
        "(env DEVSTACK_MAX_CALL_SECONDS; default: the profiles' own)",
    )
    parser.add_argument(
        "--flow",
        choices=("calls", "live", "client_secrets"),
        default=os.environ.get("DEVSTACK_FLOW") or None,
        help="what the page's Start talking does (env DEVSTACK_FLOW): calls (server-owned "
        "Realtime calls, the default), live (GPT-Live sessions, placed by the API), or "
        "client_secrets (a minted secret, the browser's offer straight to OpenAI)",
    )
    parser.add_argument(
        "--network",
        type=network_profile,
        default=os.environ.get("DEVSTACK_NETWORK") or None,
        help="put a network's delays on every hop (env DEVSTACK_NETWORK; make dev "
        f"NETWORK=...): {', '.join(PROFILES)}; loopback (the default) adds none",
    )
    parser.add_argument("--web-dir", type=Path, default=ROOT / "web")
    parser.add_argument("--quiet", action="store_true", help="logs to .devstack/logs only")
    return parser.parse_args(argv)


def network_profile(text: str) -> Profile | None:
    try:
        return parse_network(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def banner(
    stack: Stack, real_openai: bool, call_limits: str, max_call_seconds: int | None = None
) -> str:
    urls = stack.urls
    openai = (
        "the real OpenAI (OPENAI_API_KEY)"
        if real_openai
        else "emulator: Realtime, and GPT-Live at /v1/live/sessions"
    )
    calls = (
        f"calls end after {max_call_seconds} s (--max-call-seconds)"
        if max_call_seconds
        else "calls end at their profile's max_call_seconds"
    )
    network = (
        f"Network    {stack.network.name}: {stack.network.describe()}\n" if stack.network else ""
    )
    return f"""
{network}Local stack ready in {stack.startup_seconds:.1f} s (logs: {stack.log_dir})
  web page   {urls["web"]}/  (production's headers and CSP; the API under /v1/, as CloudFront)
  API        {urls["web"]}/v1/  (through the page's origin, its one door: POST
             /v1/realtime/client_secrets, /v1/realtime/calls and /v1/live/sessions,
             GET /openapi.json; CALL_LIMITS {call_limits}; {calls})
             {urls["api"]} is API Gateway's stand-in: it refuses what skipped the door (403)
  issuer     {urls["issuer"]}  (sign in with any user name; no password)
  OpenAI     {urls["openai"]}  ({openai})
  AWS        {urls["aws"]}  (moto: table devstack-quota, secret devstack/openai-api-key)
  Scheduler  {urls["scheduler"]}/status  (runs the call deadlines in moto's schedule group)
  Watcher    {urls["watcher"]}  (CallWatcherFunction: Lambda's Invoke API, one per live call)

The page talks GPT-Live with:  make dev FLOW=live   (or DEVSTACK_FLOW=live)
A token for curl:  make token USER=alice   (or: python -m devstack.token alice)
Your calls (the page places them: open the web page and press Start talking):
  curl -sS {urls["web"]}/v1/realtime/calls -H "Authorization: Bearer $(make -s token USER=alice)"
Mint a client secret (opt-in: the profile assistant-direct needs realtime:client_secrets):
  TOKEN=$(make -s token USER=alice SCOPES='openid realtime:client_secrets')
  curl -sS -X POST {urls["web"]}/v1/realtime/client_secrets \\
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{{}}'

Ctrl-C stops everything.
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ports = {name: getattr(args, f"{name}_port") for name in DEFAULT_PORTS}
    real_key = os.environ.get("OPENAI_API_KEY") or None
    # Tests run a second stack beside a developer's: they point this elsewhere.
    state_file = Path(os.environ.get("DEVSTACK_STATE") or STATE_FILE)
    with signals_as_interrupts():
        try:
            stack = start_stack(
                ports,
                quotas=args.quotas,
                extra_env={"CALL_LIMITS": args.call_limits, "SPEND_LIMITS": args.spend_limits},
                max_call_seconds=args.max_call_seconds,
                openai_api_key=real_key,
                web_root=args.web_dir,
                web_flow=args.flow,
                network=args.network,
                log_dir=state_file.parent / "logs",
                state_file=state_file,
                echo=not args.quiet,
            )
        except StackError as exc:
            for busy in exc.busy:
                hint = f"--{busy.name}-port or DEVSTACK_{busy.name.upper()}_PORT"
                print(f"devstack: {busy}; choose another with {hint}", file=sys.stderr)
            if exc.busy:
                return EXIT_PORT_BUSY
            print(f"devstack: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        print(
            banner(stack, real_key is not None, args.call_limits, args.max_call_seconds),
            flush=True,
        )
        try:
            while not stack.exited():
                time.sleep(0.5)
            for process in stack.exited():
                code = process.popen.returncode
                print(f"devstack: {process.name} stopped (exit code {code})", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
        finally:
            # A second Ctrl-C must not cut the clean-up short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            print("devstack: stopping", file=sys.stderr, flush=True)
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())
