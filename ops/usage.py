"""Today's usage per user (UTC): calls admitted, call minutes and spend, read from the ledgers
the functions write: the calls item's `n_<day>` and `m_<day>` (core.ledger) and the user's
day item of the spend ledger (core.spend), to the micro-dollar.

The report scans the table (a filtered Scan reads every item: its cost is the table's size,
eventually consistent, half a read unit per 4 KB), so it is an operator's command, not
something to run in a loop.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from token_vendor.core.controls import PREFIX as CONTROL_PREFIX
from token_vendor.core.controls import parse_controls
from token_vendor.core.spend import usd

from .connect import Target

DAY = 86400
CALLS = "calls#"
SPEND = "spend#user#"


@dataclass
class Row:
    user: str
    calls: int = 0
    seconds: int = 0  # reserved today: a live call counts its whole reservation until it ends
    spend_micros: int = 0
    blocked: bool = False

    @property
    def minutes(self) -> float:
        return round(self.seconds / 60, 1)

    def record(self) -> dict[str, Any]:
        return asdict(self) | {"minutes": self.minutes, "spend_usd": usd(self.spend_micros)}


def day_name(now: float) -> str:
    return datetime.fromtimestamp(int(now // DAY) * DAY, UTC).strftime("%Y-%m-%d")


def scan(target: Target, prefixes: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """Every item whose key starts with one of `prefixes`, page by page."""
    values = {f":p{i}": {"S": p} for i, p in enumerate(prefixes)}
    condition = " OR ".join(f"begins_with(pk, :p{i})" for i in range(len(prefixes)))
    paginator = target.client.get_paginator("scan")
    for page in paginator.paginate(
        TableName=target.table, FilterExpression=condition, ExpressionAttributeValues=values
    ):
        yield from page.get("Items", [])


def usage(target: Target, now: float) -> list[Row]:
    """One row per user with any use today, or a control: the biggest spender first."""
    day, name = int(now // DAY), day_name(now)
    rows: dict[str, Row] = {}
    for item in scan(target, (CALLS, SPEND, CONTROL_PREFIX)):
        key = item["pk"]["S"]
        if key.startswith(CALLS):
            row = rows.setdefault(key.removeprefix(CALLS), Row(key.removeprefix(CALLS)))
            row.calls = _number(item.get(f"n_{day}"))
            row.seconds = _number(item.get(f"m_{day}"))
        elif key.startswith(SPEND):
            user, _, item_day = key.removeprefix(SPEND).rpartition("#")
            if item_day == name:
                rows.setdefault(user, Row(user)).spend_micros = _number(item.get("micros"))
        else:
            user = key.removeprefix(CONTROL_PREFIX)
            rows.setdefault(user, Row(user)).blocked = parse_controls(item).blocked
    used = [r for r in rows.values() if r.calls or r.seconds or r.spend_micros or r.blocked]
    return sorted(used, key=lambda r: (-r.spend_micros, -r.seconds, -r.calls, r.user))


def render(rows: list[Row], form: str) -> str:
    records = [r.record() for r in rows]
    if form == "json":
        return json.dumps(records, indent=2)
    fields = ["user", "calls", "minutes", "seconds", "spend_usd", "spend_micros", "blocked"]
    if form == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return out.getvalue().rstrip("\n")
    lines = [f"{'user':<32}  {'calls':>5}  {'minutes':>8}  {'spend (USD)':>12}  blocked"]
    lines += [
        f"{r.user:<32}  {r.calls:>5}  {r.minutes:>8}  {usd(r.spend_micros):>12}  "
        + ("yes" if r.blocked else "")
        for r in rows
    ]
    total = sum(r.spend_micros for r in rows)
    lines.append(f"{len(rows)} users, {usd(total)} USD today (UTC)")
    return "\n".join(lines)


def _number(attribute: dict[str, str] | None) -> int:
    return int(attribute["N"]) if attribute and "N" in attribute else 0
