"""Quoting what someone else chose (a field name, a query parameter, a part's name, an
exception's message) in a problem's `detail`, OpenAI's error envelope or a log line.

A refused request spends no quota, so whatever it makes the service write is free for its
sender: echoed whole, a 60 KB name costs 240 KB of answer and 120 KB of CloudWatch ingestion.
So every quote is cut short, and every character that is not plainly visible is replaced:
controls (a newline forges a log line, an escape sequence repaints a terminal), format
characters (U+202E turns the rest of a line around, zero-width ones hide a difference),
separators other than the space, surrogates, private-use and unassigned code points. By
Unicode category, not `str.isprintable`, so the rule is written here and not left to a
Python version's definition.
"""

from __future__ import annotations

import traceback
import unicodedata

ECHO_LIMIT = 40  # characters of a caller's name quoted back
SENTENCE_LIMIT = 500  # characters of a whole sentence (a `detail`, a logged reason)
TRACE_FRAMES = 8  # the innermost frames of an unexpected failure's traceback
# Other (control, format, surrogate, private use, unassigned) and Separator (line,
# paragraph, and every space but U+0020).
HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})
REPLACEMENT = "?"


def echo(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` as a message or a log may quote it: its first `limit` characters, each one that
    is not plainly visible replaced, and "..." when something was cut. Only the first `limit`
    characters are looked at, so the work does not grow with what the caller sent."""
    shown = "".join(_visible(c) for c in text[:limit])
    return shown + ("..." if len(text) > limit else "")


def _visible(char: str) -> str:
    if char == " ":
        return char
    return REPLACEMENT if unicodedata.category(char) in HIDDEN else char


def bounded_trace(error: BaseException) -> str:
    """An unexpected failure, as its log line may hold it: the innermost TRACE_FRAMES frames
    (where it failed) and its message, echoed. A deep recursion's whole traceback is hundreds
    of KB on one line, and a message (a KeyError's key, a ValueError's literal) may quote
    what the caller sent."""
    frames = traceback.extract_tb(error.__traceback__, limit=-TRACE_FRAMES)
    lines = [f"{f.filename}:{f.lineno} in {f.name}: {(f.line or '').strip()}" for f in frames]
    lines.append(f"{type(error).__name__}: {echo(str(error), SENTENCE_LIMIT)}")
    return "\n".join(echo(line, SENTENCE_LIMIT) for line in lines)
