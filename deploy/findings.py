"""What the deploy's preflight found: each finding one line of what is so, and what to do."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Level = Literal["blocker", "warning", "ok"]
LABELS = {"blocker": "BLOCKER", "warning": "warning", "ok": "ok"}
WIDTH = 100  # what a terminal shows without wrapping
COMMANDS = ("aws ", "make ")  # a `todo` that is a command to paste
# Every topic a finding can have, in the order docs/deploy.md explains them (a test keeps the
# two equal, so no finding appears that the guide does not explain).
TOPICS = (
    "stack name", "template", "capabilities", "credentials", "region", "account", "stack",
    "WAF", "concurrency", "quota", "secrets", "OpenAI key", "door secret",
)  # fmt: skip


@dataclass(frozen=True)
class Finding:
    level: Level
    topic: str  # a word or two: "stack name", "concurrency", "OpenAI key", ...
    says: str  # what is so, never a secret's value
    todo: str = ""  # what to do about it, when anything

    def __post_init__(self) -> None:
        if self.topic not in TOPICS:
            raise ValueError(f"a finding's topic must be one of TOPICS, not {self.topic!r}")

    def lines(self) -> list[str]:
        indent = " " * 24
        lines = textwrap.wrap(
            self.says,
            WIDTH,
            initial_indent=f"{LABELS[self.level]:>8}  {self.topic:<13} ",
            subsequent_indent=indent,
            break_on_hyphens=False,
        )
        if self.todo:
            command = self.todo.startswith(COMMANDS)
            todo = textwrap.wrap(
                self.todo,
                WIDTH - 2 if command else WIDTH,
                initial_indent=f"{'':>8}  {'':<13} -> ",
                subsequent_indent=indent + "   ",
                break_on_hyphens=False,
                break_long_words=False,
            )
            if command:  # still one command when pasted: each break continued
                todo = [line + " \\" for line in todo[:-1]] + todo[-1:]
            lines += todo
        return lines


def blockers(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "blocker"]


def report(title: str, findings: list[Finding]) -> str:
    """One screen: the title, blockers first, then warnings, then what is fine."""
    order = {"blocker": 0, "warning": 1, "ok": 2}
    lines = [title]
    for finding in sorted(findings, key=lambda f: order[f.level]):
        lines += finding.lines()
    stopped = blockers(findings)
    warned = [f for f in findings if f.level == "warning"]
    if stopped:
        lines.append(f"{len(stopped)} blocker(s): nothing was deployed. Fix them and run again.")
    else:
        lines.append(f"No blocker ({len(warned)} warning(s)).")
    return "\n".join(lines)
