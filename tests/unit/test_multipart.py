"""The strict multipart/form-data reader (api/multipart.py): it reads what real clients send,
refuses everything else by name, and its work does not grow with what it is sent."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import requests
import urllib3
from token_vendor.api import multipart
from token_vendor.core.errors import InvalidRequest
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

SDP = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
SESSION = '{"type":"realtime"}'
FIELDS = ("sdp", "session")


def read(body: bytes, content_type: str) -> dict[str, bytes]:
    _, parameters = multipart.content_type(content_type)
    return multipart.read_form(body, multipart.boundary(parameters), FIELDS)


def from_httpx() -> tuple[bytes, str]:
    """How the openai package (over httpx) sends `client.realtime.calls.create`."""
    files = [
        ("sdp", (None, SDP.encode(), "application/sdp")),
        ("session", (None, SESSION.encode(), "application/json")),
    ]
    request = httpx.Request("POST", "https://api.example.com/v1/realtime/calls", files=files)
    return request.read(), request.headers["content-type"]


def from_requests() -> tuple[bytes, str]:
    files = {"sdp": (None, SDP, "application/sdp"), "session": (None, SESSION, "application/json")}
    prepared = requests.Request("POST", "https://api.example.com/", files=files).prepare()
    content_type = prepared.headers["Content-Type"]
    assert isinstance(prepared.body, bytes) and isinstance(content_type, str)
    return prepared.body, content_type


def from_urllib3() -> tuple[bytes, str]:
    return urllib3.encode_multipart_formdata(
        {"sdp": SDP, "session": ("session.json", SESSION, "application/json")}
    )


def from_werkzeug() -> tuple[bytes, str]:
    """Flask's test client's encoder (and so schemathesis's, through WSGI): an empty line
    before the first boundary."""
    session = FileStorage(io.BytesIO(SESSION.encode()), "s", content_type="application/json")
    boundary, body = encode_multipart(MultiDict({"sdp": SDP, "session": session}), "werkzeug-b")
    return body, f"multipart/form-data; boundary={boundary}"


def captured(boundary: str, *parts: str) -> tuple[bytes, str]:
    """A body as a client wrote it, `parts` its parts' header lines and content verbatim."""
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--\r\n"
    return body.encode(), f"multipart/form-data; boundary={boundary}"


CLIENTS: dict[str, Callable[[], tuple[bytes, str]]] = {
    "openai_python_httpx": from_httpx,
    "requests": from_requests,
    "urllib3": from_urllib3,
    "werkzeug": from_werkzeug,
    # FormData with a string and a JSON Blob, posted by fetch: captured from Chromium 156.
    "chromium": lambda: captured(
        "----WebKitFormBoundaryo1bX8B6PFJzFLKRK",
        f'Content-Disposition: form-data; name="sdp"\r\n\r\n{SDP}',
        'Content-Disposition: form-data; name="session"; filename="blob"\r\n'
        f"Content-Type: application/json\r\n\r\n{SESSION}",
    ),
    # The same FormData in Node 20's fetch (undici), as the openai package for Node sends it.
    "node_undici": lambda: captured(
        "----formdata-undici-038742515145",
        f'Content-Disposition: form-data; name="sdp"\r\n\r\n{SDP}',
        'Content-Disposition: form-data; name="session"; filename="blob"\r\n'
        f"Content-Type: application/json\r\n\r\n{SESSION}",
    ),
    # curl 7.88 -F "sdp=<offer.sdp;type=application/sdp" -F 'session=...;type=application/json'
    "curl": lambda: captured(
        "------------------------a974a6f2fbcee930",
        f'Content-Disposition: form-data; name="sdp"\r\nContent-Type: application/sdp\r\n\r\n{SDP}',
        'Content-Disposition: form-data; name="session"\r\n'
        f"Content-Type: application/json\r\n\r\n{SESSION}",
    ),
    # OkHttp's MultipartBody (the openai-java SDK's transport) writes each part's length.
    "okhttp": lambda: captured(
        "c2a4b6e0-okhttp",
        'Content-Disposition: form-data; name="sdp"\r\nContent-Type: application/sdp\r\n'
        f"Content-Length: {len(SDP)}\r\n\r\n{SDP}",
        'Content-Disposition: form-data; name="session"\r\nContent-Type: application/json\r\n'
        f"Content-Length: {len(SESSION)}\r\n\r\n{SESSION}",
    ),
    # Apache HttpClient's default (strict) mode, and a token name (RFC 7578 allows one).
    "apache_httpmime": lambda: captured(
        "apache-b",
        "Content-Disposition: form-data; name=sdp\r\nContent-Type: application/sdp\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\n{SDP}",
        "Content-Disposition: form-data; name=session\r\n"
        f"Content-Transfer-Encoding: binary\r\n\r\n{SESSION}",
    ),
}


@pytest.mark.parametrize("client", CLIENTS.values(), ids=CLIENTS.keys())
def test_what_real_clients_send_is_read(client: Callable[[], tuple[bytes, str]]) -> None:
    body, content_type = client()

    assert read(body, content_type) == {"sdp": SDP.encode(), "session": SESSION.encode()}


def test_parts_may_come_in_any_order_and_the_session_is_optional() -> None:
    body, content_type = captured("b", f'Content-Disposition: form-data; name="sdp"\r\n\r\n{SDP}')
    assert read(body, content_type) == {"sdp": SDP.encode()}

    body, content_type = captured(
        "b",
        f'Content-Disposition: form-data; name="session"\r\n\r\n{SESSION}',
        f'Content-Disposition: FORM-DATA ; name="sdp" ;\r\n\r\n{SDP}',
    )
    assert read(body, content_type)["sdp"] == SDP.encode()


def test_the_content_type_is_read_strictly() -> None:
    assert multipart.content_type('multipart/form-data; charset=utf-8;boundary="a b:c"') == (
        "multipart/form-data",
        {"charset": "utf-8", "boundary": "a b:c"},
    )
    for header in (
        "multipart/form-data; boundary=a; boundary=b",  # which one?
        "multipart/form-data; boundary",
        'multipart/form-data; boundary="a\\"b"',  # no quoted pairs
        'multipart/form-data; boundary="open',
        "multipart/form-data; boundary=(((((",
        "multipart/form-data; " + "x" * 300,
        "multipart/form-data, text/plain",
        "",
    ):
        with pytest.raises(InvalidRequest):
            multipart.content_type(header)
    for parameters in ({}, {"boundary": ""}, {"boundary": "x" * 71}, {"boundary": "ends "}):
        with pytest.raises(InvalidRequest):
            multipart.boundary(parameters)


def part(headers: str, content: str = SDP) -> str:
    return f"{headers}\r\n\r\n{content}"


SDP_PART = part('Content-Disposition: form-data; name="sdp"')
REFUSED: dict[str, tuple[bytes, str | None, str]] = {
    "a_preamble": (b"hello\r\n" + captured("b", SDP_PART)[0], None, "must start with its boundary"),
    "lf_only": (captured("b", SDP_PART)[0].replace(b"\r\n", b"\n"), None, "must start"),
    "no_closing_line": (captured("b", SDP_PART)[0][: -len(b"--b--\r\n")], None, "no closing"),
    "an_epilogue": (captured("b", SDP_PART)[0] + b"more", None, "nothing may follow"),
    "padding_after_a_boundary": (
        b"--b\r\n"
        + part('Content-Disposition: form-data; name="sdp"').encode()
        + b"\r\n--b  \r\n"
        + b"--b--\r\n",
        None,
        "must end right after the boundary",
    ),
    "an_unknown_part": (
        captured("b", part('Content-Disposition: form-data; name="x"'))[0],
        "x",
        "'x' is not allowed",
    ),
    "a_part_twice": (captured("b", SDP_PART, SDP_PART)[0], "sdp", "given twice"),
    "a_third_part": (
        captured("b", SDP_PART, part('Content-Disposition: form-data; name="session"'), SDP_PART)[
            0
        ],
        None,
        "at most 2 parts",
    ),
    "no_disposition": (
        captured("b", part("Content-Type: application/sdp"))[0],
        None,
        "no Content-Disposition",
    ),
    "no_headers": (
        b"--b\r\n\r\n" + SDP.encode() + b"\r\n--b--\r\n",
        None,
        "no Content-Disposition",
    ),
    "not_form_data": (
        captured("b", part('Content-Disposition: attachment; name="sdp"'))[0],
        None,
        "must be 'form-data'",
    ),
    "no_name": (captured("b", part("Content-Disposition: form-data"))[0], None, "has no name"),
    "filename_star": (
        captured("b", part("Content-Disposition: form-data; name=\"sdp\"; filename*=UTF-8''a"))[0],
        None,
        "'filename*' is not allowed",
    ),
    "another_parameter": (
        captured("b", part('Content-Disposition: form-data; name="sdp"; size=3'))[0],
        None,
        "'size' is not allowed",
    ),
    "a_parameter_twice": (
        captured("b", part('Content-Disposition: form-data; name="sdp"; name="x"'))[0],
        None,
        "twice",
    ),
    "an_encoded_word": (
        captured("b", part("Content-Disposition: form-data; name==?utf-8?q?sdp?="))[0],
        None,
        "cannot be read",
    ),
    "a_comment": (
        captured("b", part('Content-Disposition: form-data; name="sdp" (a comment)'))[0],
        None,
        "cannot be read",
    ),
    "a_long_name": (
        captured("b", part(f'Content-Disposition: form-data; name="{"n" * 65}"'))[0],
        "n" * 40 + "...",
        "at most 64",
    ),
    "a_long_header_line": (
        captured("b", part(f'Content-Disposition: form-data; name="sdp"; filename="{"f" * 500}"'))[
            0
        ],
        None,
        "at most 512 bytes",
    ),
    "a_continuation_line": (
        captured("b", part('Content-Disposition: form-data;\r\n name="sdp"'))[0],
        None,
        "cannot be read",
    ),
    "another_header": (
        captured("b", part('Content-Disposition: form-data; name="sdp"\r\nX-Extra: 1'))[0],
        None,
        "'X-Extra' is not allowed",
    ),
    "a_header_twice": (
        captured(
            "b",
            part(
                'Content-Disposition: form-data; name="sdp"\r\nContent-Type: a/b\r\ncontent-type: a/b'
            ),
        )[0],
        None,
        "two",
    ),
    "space_before_the_colon": (
        captured("b", part('Content-Disposition : form-data; name="sdp"'))[0],
        None,
        "cannot be read",
    ),
    "a_wrong_length": (
        captured("b", part('Content-Disposition: form-data; name="sdp"\r\nContent-Length: 3'))[0],
        "sdp",
        "Content-Length",
    ),
    "an_encoded_part": (
        captured(
            "b",
            part('Content-Disposition: form-data; name="sdp"\r\nContent-Transfer-Encoding: base64'),
        )[0],
        "sdp",
        "must not be encoded",
    ),
    "many_parameters": (
        captured("b", part('Content-Disposition: form-data; name="sdp";;;;'))[0],
        None,
        "at most 4 parameters",
    ),
}


@pytest.mark.parametrize(("body", "field", "detail"), REFUSED.values(), ids=REFUSED.keys())
def test_anything_else_is_refused_naming_what(body: bytes, field: str | None, detail: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        read(body, "multipart/form-data; boundary=b")

    assert detail in refused.value.detail and refused.value.field == field


def test_a_nested_form_is_only_content() -> None:
    """A part whose Content-Type is multipart is not read as one: its bytes are the field's."""
    inner = '--c\r\nContent-Disposition: form-data; name="x"\r\n\r\nx\r\n--c--'
    body, _ = captured(
        "b",
        part(
            'Content-Disposition: form-data; name="session"\r\nContent-Type: multipart/mixed; boundary=c',
            inner,
        ),
    )

    assert read(body, "multipart/form-data; boundary=b") == {"session": inner.encode()}


def steps(work: Callable[[], Any]) -> int:
    """Python and C function calls made while `work` runs: a count that does not depend on
    the machine, for a reader that leaves the scanning of bytes to `bytes.find`."""
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        work()
    except InvalidRequest:
        pass
    finally:
        sys.setprofile(None)
    return calls


HOSTILE_FORMS = {
    "empty_parts": b"--b\r\n\r\n" * 9_000 + b"--b--\r\n",
    "parentheses": b'--b\r\nContent-Disposition: form-data; name="sdp"; x='
    + b"(" * 450
    + b"\r\n\r\n",
    "parameters": b'--b\r\nContent-Disposition: form-data; name="sdp"' + b";" * 450 + b"\r\n\r\n",
    "a_long_part": b'--b\r\nContent-Disposition: form-data; name="sdp"\r\n\r\n'
    + b"\r\n--x" * 12_000,
    "near_boundaries": b'--b\r\nContent-Disposition: form-data; name="sdp"\r\n\r\n'
    + b"\r\n-" * 21_000,
    "unterminated_header": b"--b\r\nContent-Disposition: form-data; name=" + b"a" * 60_000,
}


@pytest.mark.parametrize("body", HOSTILE_FORMS.values(), ids=HOSTILE_FORMS.keys())
def test_the_work_does_not_grow_with_the_body(body: bytes) -> None:
    """Each hostile 60 KB form costs about what a small valid one does: the email parser's
    walk over 9,000 parts made hundreds of thousands of calls."""
    valid, content_type = CLIENTS["curl"]()
    baseline = steps(lambda: read(valid, content_type))

    assert len(body) <= 64 * 1024
    assert steps(lambda: read(body, "multipart/form-data; boundary=b")) <= 2 * baseline
