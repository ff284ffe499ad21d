"""`python -m ops` (and `make ops ARGS="..."`): see ops/__init__.py and docs/operations.md."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .connect import OpsError, connect
from .usage import render, usage
from .users import Users, check_value, describe, until, user_id

NAME = "ops"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=NAME, description="The token vendor's operator command line."
    )
    where = top.add_argument_group("which table (one of)")
    where.add_argument("--table", help="the quota table's name")
    where.add_argument("--stack", help="the stack's name: its QuotaTableName output")
    where.add_argument("--local", action="store_true", help="the local stack (make dev)")
    top.add_argument("--region", help="AWS region (else AWS_REGION or the profile's)")
    top.add_argument("--endpoint", help="a DynamoDB endpoint URL (moto); --local finds its own")
    commands = top.add_subparsers(dest="command", required=True)

    report = commands.add_parser("usage", help="today's usage per user: calls, minutes, spend")
    report.add_argument("--top", type=int, default=0, help="only the N biggest spenders")
    report.add_argument("--format", choices=("table", "json", "csv"), default="table")

    def with_user(name: str, text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "user", help="the user's hash (the logs' `user`), or with --issuer their `sub`"
        )
        command.add_argument("--issuer", help="the token's issuer: USER is then its subject")
        return command

    with_user("user", "one user's state: controls, today's usage, live calls")
    block = with_user("block", "refuse the user's requests and end their live calls")
    block.add_argument("--reason", default="", help="kept in the table, never shown to them")
    block.add_argument("--force", action="store_true", help="block a user the table does not know")
    with_user("unblock", "lift a block")
    override = with_user("override", "replace one of the user's limits until a time")
    override.add_argument("limit", choices=("quotas", "call_limits", "spend_limits"))
    override.add_argument("value", help="in the variable's syntax: usd/day=5, concurrent=3,...")
    override.add_argument("--for", dest="for_", help="how long: 30m, 2h, 7d")
    override.add_argument("--until", help="until when: an ISO 8601 time (UTC if no zone)")
    override.add_argument("--force", action="store_true", help="for a user the table does not know")
    clear = with_user("clear", "remove an override")
    clear.add_argument("limit", choices=("quotas", "call_limits", "spend_limits"))
    calls = commands.add_parser("calls", help="live calls (everyone's, or one user's)")
    calls.add_argument("user", nargs="?")
    calls.add_argument("--issuer")
    end = with_user("end", "end one live call (through its watcher)")
    end.add_argument("call_id")
    end.add_argument("--wait", type=float, default=15.0, help="seconds to wait for the end")
    return top


def run(args: argparse.Namespace, session: Any = None, clock: Any = time.time) -> str:
    target = connect(
        table=args.table,
        stack=args.stack,
        local=args.local,
        region=args.region,
        endpoint=args.endpoint,
        session=session,
    )
    users = Users(target, clock)
    if args.command == "usage":
        rows = usage(target, clock())
        return render(rows[: args.top] if args.top > 0 else rows, args.format)
    if args.command == "calls":
        found = users.live(user_id(args.user, args.issuer)) if args.user else users.all_live()
        return json.dumps([describe(c) for c in found], indent=2)
    user = user_id(args.user, args.issuer)
    if args.command == "user":
        return json.dumps(users.state(user), indent=2)
    if args.command == "block":
        users.require(user, args.force)
        users.writer().block(user, args.reason)
        live = len(users.live(user))
        # This command cannot see the functions' settings: say what the block does where
        # they read it, not a promise about this deploy.
        return (
            f"blocked {user}: where USER_CONTROLS is on (the default), new requests get 403 "
            f"user-blocked; {live} live call(s): their watchers end them within seconds "
            "(sessions of client secrets already minted, and unwatched calls, run on)"
        )
    if args.command == "unblock":
        users.require(user)
        users.writer().unblock(user)
        return f"unblocked {user}"
    if args.command == "override":
        users.require(user, args.force)
        check_value(args.limit, args.value)
        end = until(args.for_, args.until, clock())
        users.writer().set_override(user, args.limit, args.value, end)
        moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end))
        return f"{args.limit} of {user} is {args.value} until {moment}"
    if args.command == "clear":
        users.require(user)
        users.writer().clear_override(user, args.limit)
        return f"{args.limit} of {user}: back to their plan's"
    assert args.command == "end"
    reason = users.end(user, args.call_id, args.wait)
    return f"ended {args.call_id} (end_reason {reason})"


def main(argv: list[str] | None = None, session: Any = None, clock: Any = time.time) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    args = parser().parse_args(argv)
    try:
        print(run(args, session, clock))
    except OpsError as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2
    # What AWS (or a stale --local endpoint: moto down) refuses after connect() is no bug of
    # this command: one line, not a traceback. Its code and message name no secret.
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        print(f"{NAME}: AWS answered {code}: {exc}", file=sys.stderr)
        return 2
    except BotoCoreError as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
