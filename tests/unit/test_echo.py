"""core/echo.py: what a message or a log may quote of someone else's text."""

from __future__ import annotations

import pytest
from token_vendor.core.echo import ECHO_LIMIT, SENTENCE_LIMIT, TRACE_FRAMES, bounded_trace, echo

HIDDEN = {
    "nul": "\x00",
    "newline": "\n",
    "carriage_return": "\r",
    "escape": "\x1b",
    "delete": "\x7f",
    "next_line": "\x85",
    "right_to_left_override": "\u202e",
    "left_to_right_isolate": "\u2066",
    "arabic_letter_mark": "\u061c",
    "zero_width_space": "\u200b",
    "byte_order_mark": "\ufeff",
    "soft_hyphen": "\u00ad",
    "tag_letter": "\U000e0041",
    "lone_surrogate": "\ud800",
    "private_use": "\ue000",
    "unassigned": "\u0378",
    "line_separator": "\u2028",
    "paragraph_separator": "\u2029",
    "no_break_space": "\u00a0",
    "ideographic_space": "\u3000",
}


@pytest.mark.parametrize("char", HIDDEN.values(), ids=HIDDEN.keys())
def test_every_character_that_is_not_plainly_visible_is_replaced(char: str) -> None:
    assert echo(f"a{char}b") == "a?b"


def test_visible_text_and_the_space_are_kept() -> None:
    text = "voix d'été, 声音, ☎️ ok"

    assert echo(text) == text


def test_a_long_name_is_cut_and_says_so() -> None:
    assert echo("x" * ECHO_LIMIT) == "x" * ECHO_LIMIT
    assert echo("x" * 60_000) == "x" * ECHO_LIMIT + "..."
    assert echo("\u202e" * 60_000, 5) == "?????..."


def test_echoing_twice_changes_nothing() -> None:
    once = echo("a\u202eb\nc" * 3)

    assert echo(once) == once


def deep(n: int, secret: str) -> None:
    if n == 0:
        raise KeyError(secret)
    deep(n - 1, secret)


def test_an_unexpected_failure_is_traced_briefly_without_what_it_quotes() -> None:
    """A deep recursion's traceback, whole, is hundreds of KB; its message may quote what the
    caller sent, at any length."""
    try:
        deep(900, "k" * 60_000)
    except KeyError as exc:
        trace = bounded_trace(exc)

    lines = trace.split("\n")
    assert len(lines) == TRACE_FRAMES + 1
    assert all(len(line) <= SENTENCE_LIMIT + 3 for line in lines)
    assert "in deep: raise KeyError(secret)" in lines[-2]  # the innermost frame, where it failed
    assert lines[-1].startswith("KeyError: ") and lines[-1].endswith("k...")


def test_a_failures_message_is_echoed() -> None:
    try:
        raise ValueError("a\u202eb\nc")
    except ValueError as exc:
        assert bounded_trace(exc).split("\n")[-1] == "ValueError: a?b?c"
