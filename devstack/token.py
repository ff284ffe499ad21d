"""`python -m devstack.token alice`: an access token from the running local stack.

Only the token is printed, so it drops into curl: -H "Authorization: Bearer $(...)".
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx

from devstack.stack import STATE_FILE, request_token, running_state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.token", description=__doc__)
    parser.add_argument("user", help="any user name; the token's sub is user-<name>")
    parser.add_argument("--scopes", help="space separated (default: openid realtime:mint)")
    parser.add_argument("--lifetime", type=int, help="seconds (default: the issuer's)")
    parser.add_argument("--state", type=Path, default=os.environ.get("DEVSTACK_STATE", STATE_FILE))
    args = parser.parse_args(argv)
    try:
        state = running_state(args.state)
    except FileNotFoundError:
        print(f"no local stack is running ({args.state} is missing): start it with make dev",
              file=sys.stderr)  # fmt: skip
        return 1
    try:
        print(request_token(state["token_url"], args.user, args.scopes, args.lifetime))
    except httpx.TransportError:
        print(f"the local stack's issuer does not answer at {state['token_url']}: "
              "is make dev still running?", file=sys.stderr)  # fmt: skip
        return 1
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
