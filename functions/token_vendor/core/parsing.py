"""Reading what others send: one JSON-object parser, one size-capped reader, one integer check.

Every adapter and the handler read untrusted bytes (a request body, a token's segments, a key
set, OpenAI's answer) the same way, so each rule is written once: nesting deep enough to
exhaust the parser is "not JSON", never a crash; nothing is buffered past its cap; JSON's
`true` is not the number 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeGuard


class NotJson(ValueError):
    """The bytes are not JSON (or nest too deeply to be parsed)."""


class NotAnObject(ValueError):
    """The bytes are JSON, but not an object."""


class TooLarge(ValueError):
    """More bytes arrived than the reader's cap allows."""


def json_object(raw: bytes | str) -> dict[str, Any]:
    """`raw` parsed as one JSON object, or NotJson / NotAnObject."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: a few KB of brackets
        raise NotJson("not JSON") from None
    if not isinstance(value, dict):
        raise NotAnObject("not a JSON object")
    return value


def read_capped(chunks: Iterable[bytes], limit: int) -> bytes:
    """The chunks joined, or TooLarge as soon as they pass `limit` bytes."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"more than {limit} bytes")
    return bytes(body)


def is_int(value: object) -> TypeGuard[int]:
    """A JSON whole number: an int, and not a bool (in Python, `True` is an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number: an int or a float, and not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)
