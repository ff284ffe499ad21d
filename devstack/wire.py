"""Reading what clients send to the stack's servers, once for all of them.

The emulator, its data channel and the dev issuer all read JSON from clients that tests drive
on purpose with hostile input: nesting deep enough to exhaust the parser is "not JSON" here,
never a crash, and JSON's `true` is not the number 1.
"""

from __future__ import annotations

import json
from typing import Any, TypeGuard


class NotJson(ValueError):
    """The text is not JSON (or nests too deeply to be parsed)."""


def json_value(raw: str | bytes) -> Any:
    """`raw` parsed as JSON, or NotJson."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: a few KB of brackets
        raise NotJson("not JSON") from None


def is_int(value: object) -> TypeGuard[int]:
    """A JSON whole number: an int, and not a bool (in Python, `True` is an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number: an int or a float, and not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)
