"""The one JSON-object parser, size-capped reader and number checks every adapter uses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from token_vendor.core.parsing import (
    NotAnObject,
    NotJson,
    TooLarge,
    is_int,
    is_number,
    json_object,
    read_capped,
)


def test_an_object_is_parsed_from_bytes_or_text() -> None:
    assert json_object(b'{"a": 1}') == {"a": 1} == json_object('{"a": 1}')


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"NaN-ish", b"[" * 100_000])
def test_what_is_not_json_is_not_json_even_when_it_would_exhaust_the_parser(raw: bytes) -> None:
    with pytest.raises(NotJson, match="not JSON"):
        json_object(raw)


@pytest.mark.parametrize("raw", [b"[]", b'"x"', b"1", b"null", b"true"])
def test_json_that_is_not_an_object_is_told_apart(raw: bytes) -> None:
    with pytest.raises(NotAnObject, match="not a JSON object"):
        json_object(raw)


def test_the_reader_stops_at_the_first_chunk_past_its_cap() -> None:
    pulled: list[bytes] = []

    def chunks() -> list[bytes]:
        return [b"a" * 4, b"b" * 4, b"c" * 4]

    def stream() -> Iterator[bytes]:
        for chunk in chunks():
            pulled.append(chunk)
            yield chunk

    assert read_capped(chunks(), 12) == b"aaaabbbbcccc"
    with pytest.raises(TooLarge):
        read_capped(stream(), 7)
    assert pulled == [b"a" * 4, b"b" * 4]  # the third chunk is never read


@pytest.mark.parametrize(
    ("value", "whole", "number"),
    [(1, True, True), (0, True, True), (1.5, False, True), (True, False, False),
     (False, False, False), ("1", False, False), (None, False, False)],
)  # fmt: skip
def test_a_bool_is_neither_a_whole_number_nor_a_number(
    value: object, whole: bool, number: bool
) -> None:
    assert (is_int(value), is_number(value)) == (whole, number)
