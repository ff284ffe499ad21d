"""Hostile input through every route and every parser, through the real handler.

First what a review found: a part header that exhausted the email parser's stack (a 500, the
alarm, a 171 KB log line), names echoed whole into the answer and the log (60 KB in: 240 KB
out), thousands of parts walked before a refusal. Then a hostile name in every place a caller
can put one: each answer and each request's logs bounded, no hidden character in either, and
nothing spent (tests/support/bounds.py). A new route, parser or message that quotes a caller's
text without `core.echo` fails here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from devstack.lambda_events import http_event
from tests.support.aws import Aws
from tests.support.bounds import Measured, assert_bounded, measure
from tests.support.handler import CALLS, Reply, assert_problem
from tests.support.identity import Issuer
from tests.support.internet import OFFER_SDP
from tests.support.logs import LogCapture

LIVE = "/v1/live/sessions"
BOUNDARY = "b0undary"
# A bidi override and isolate, a zero-width space, a terminal escape, NUL, a line separator,
# a byte-order mark, DEL, and one visible letter.
UNIT = "\u202e\u2066\u200b\x1b[31m\x00\u2028\ufeff\x7fA"
JSON_UNIT = UNIT + "\ud800"  # and a lone surrogate, which only JSON's escapes can carry
HEADER_UNIT = UNIT.replace("\x00", "")  # what fits in a part's header line and a quoted name


def hostile(size: int, unit: str = UNIT) -> str:
    return (unit * (size // len(unit) + 1))[:size]


@pytest.fixture
def handler(make_handler: Callable[..., Any]) -> Any:
    return make_handler(QUOTAS="1000000/minute")


def send(handler: Any, event: dict[str, Any], aws: Aws, logs: LogCapture) -> Any:
    measured = measure(handler, event, aws, logs)
    assert_bounded(measured)
    return measured


# --- the requests ----------------------------------------------------------------------------


def mint(token: str, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    base = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    return http_event(headers=base | (headers or {}), body=json.dumps(body))


def calls(
    token: str, body: bytes, content_type: str = "application/sdp", query: str = ""
) -> dict[str, Any]:
    """POST /v1/realtime/calls, the body base64-encoded as API Gateway passes a binary one."""
    headers = {"authorization": f"Bearer {token}", "content-type": content_type}
    encoded = base64.b64encode(body).decode()
    return http_event("POST", CALLS, headers, encoded, base64=True, raw_query=query)


def form(*parts: tuple[list[str], str], boundary: str = BOUNDARY) -> bytes:
    """A multipart/form-data body: each part its header lines and its content."""
    lines: list[str] = []
    for headers, content in parts:
        lines += [f"--{boundary}", *headers, "", content]
    return ("\r\n".join([*lines, f"--{boundary}--"]) + "\r\n").encode()


def named(name: str, content: str = OFFER_SDP) -> tuple[list[str], str]:
    return [f'Content-Disposition: form-data; name="{name}"'], content


def form_call(token: str, *parts: tuple[list[str], str]) -> dict[str, Any]:
    return calls(token, form(*parts), f"multipart/form-data; boundary={BOUNDARY}")


def live(token: str, body: Any, query: str = "") -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    return http_event("POST", LIVE, headers, json.dumps(body), raw_query=query)


def hangup(token: str, call_id: str, route: str = CALLS) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"}
    return http_event("POST", f"{route}/{call_id}/hangup", headers)


TRANSPORT = {"type": "webrtc", "sdp": OFFER_SDP}
SESSION = ("application/json", "{}")

# --- what the review found -------------------------------------------------------------------


@pytest.mark.parametrize("parentheses", [1000, 400])
def test_parentheses_in_a_part_header_are_a_400_not_a_500(
    handler: Any,
    issuer: Issuer,
    aws: Aws,
    logs: LogCapture,
    capsys: pytest.CaptureFixture[str],
    parentheses: int,
) -> None:
    """1,000 (a 1 KB body) passed the email parser's recursion limit; 400 fit in one header
    line of the new reader's and reach its parameter parser."""
    header = 'Content-Disposition: form-data; name="sdp"; x=' + "(" * parentheses

    measured = send(handler, form_call(issuer.token(), ([header], OFFER_SDP)), aws, logs)

    assert_problem(measured.reply, 400, "invalid-request")
    assert "UnexpectedErrors" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "event",
    [
        lambda token: form_call(token, named("A" * 60_000)),
        lambda token: calls(token, OFFER_SDP.encode(), query="A" * 60_000 + "=1"),
    ],
    ids=["part", "query_parameter"],
)
def test_a_60_kb_name_gets_a_short_answer_and_a_short_log(
    handler: Any, issuer: Issuer, aws: Aws, logs: LogCapture, event: Any
) -> None:
    """Both were echoed whole: 240 KB of answer and 120 KB of log for 60 KB sent."""
    measured = send(handler, event(issuer.token()), aws, logs)

    assert_problem(measured.reply, 400, "invalid-request")
    assert "A" * 100 not in measured.reply.body and "A" * 100 not in measured.log


@pytest.mark.parametrize(
    ("parts", "refusal"),
    [
        ([named("sdp", "")] * 1_000, "'sdp' is given twice"),
        ([named("session", "{}"), named("sdp"), *[named("x", "")] * 1_000], "at most 2 parts"),
    ],
    ids=["repeated", "third"],
)
def test_thousands_of_parts_are_refused_at_the_first_one_too_many(
    handler: Any,
    issuer: Issuer,
    aws: Aws,
    logs: LogCapture,
    parts: list[tuple[list[str], str]],
    refusal: str,
) -> None:
    """The refusal names the first part out of place: none after it is read."""
    body = form(*parts, boundary="b")
    assert len(body) <= 64 * 1024  # under the body cap: the reader, not the cap, refuses

    event = calls(issuer.token(), body, "multipart/form-data; boundary=b")
    measured = send(handler, event, aws, logs)

    assert refusal in assert_problem(measured.reply, 400, "invalid-request")["detail"]


def test_nine_thousand_empty_parts_are_refused_at_the_first(
    handler: Any, issuer: Issuer, aws: Aws, logs: LogCapture
) -> None:
    """63 KB of boundary lines and nothing else: the email parser walked all 9,000 parts
    (most of a second of CPU) before the first was looked at."""
    body = b"--b\r\n\r\n" * 9_000 + b"--b--\r\n"

    event = calls(issuer.token(), body, "multipart/form-data; boundary=b")
    measured = send(handler, event, aws, logs)

    detail = assert_problem(measured.reply, 400, "invalid-request")["detail"]
    assert detail == "a part has no Content-Disposition naming its field"


# --- a hostile name wherever a caller can put one ------------------------------------------

PLACES: dict[str, Callable[[str], dict[str, Any]]] = {
    # POST /v1/realtime/client_secrets: JSON (16 KiB at most)
    "mint_field": lambda t: mint(t, {hostile(12_000, JSON_UNIT): 1}),
    "mint_session_field": lambda t: mint(t, {"session": {hostile(12_000, JSON_UNIT): 1}}),
    "mint_audio_field": lambda t: mint(
        t, {"session": {"audio": {"output": {hostile(100, JSON_UNIT): 1}}}}
    ),
    "mint_expires_after_field": lambda t: mint(t, {"expires_after": {hostile(100): 1}}),
    "mint_profile": lambda t: mint(t, {"profile": hostile(12_000, JSON_UNIT)}),
    "mint_model": lambda t: mint(t, {"session": {"model": hostile(100, JSON_UNIT)}}),
    "mint_voice": lambda t: mint(t, {"session": {"audio": {"output": {"voice": hostile(99)}}}}),
    # POST /v1/realtime/calls: the query string
    "calls_query_name_long": lambda t: calls(
        t, OFFER_SDP.encode(), query=quote(hostile(60_000)) + "=1"
    ),
    "calls_query_name": lambda t: calls(t, OFFER_SDP.encode(), query=quote(hostile(100)) + "=1"),
    "calls_query_profile": lambda t: calls(
        t, OFFER_SDP.encode(), query="profile=" + quote(hostile(100))
    ),
    "calls_query_twice": lambda t: calls(
        t, OFFER_SDP.encode(), query="profile=a&profile=" + quote(hostile(50))
    ),
    # POST /v1/realtime/calls: the multipart form
    "calls_part_name_long": lambda t: form_call(t, named(hostile(60_000, HEADER_UNIT))),
    "calls_part_name": lambda t: form_call(t, named(hostile(400, HEADER_UNIT))),
    "calls_part_name_short": lambda t: form_call(t, named(hostile(60, HEADER_UNIT))),
    "calls_part_header_name": lambda t: form_call(t, (["X" * 450 + ": 1"], OFFER_SDP)),
    "calls_part_header_hidden": lambda t: form_call(t, ([hostile(300, HEADER_UNIT)], "")),
    "calls_disposition_parameter": lambda t: form_call(
        t, (['Content-Disposition: form-data; name="sdp"; ' + "p" * 400 + "=1"], OFFER_SDP)
    ),
    "calls_disposition_hidden": lambda t: form_call(
        t, ([f'Content-Disposition: form-data; name="sdp"; {hostile(300, HEADER_UNIT)}'], "")
    ),
    "calls_session_field": lambda t: form_call(
        t, named("sdp"), named("session", json.dumps({hostile(20_000, JSON_UNIT): 1}))
    ),
    "calls_session_profile": lambda t: form_call(
        t, named("sdp"), named("session", json.dumps({"profile": hostile(20_000, JSON_UNIT)}))
    ),
    "calls_boundary": lambda t: calls(
        t, form(named("sdp")), f'multipart/form-data; boundary="{hostile(200, HEADER_UNIT)}"'
    ),
    "calls_content_type_parameter": lambda t: calls(
        t, form(named("sdp")), f"multipart/form-data; {'q' * 99}=1; {'Q' * 99}=2; boundary=b"
    ),
    "calls_content_type_hidden": lambda t: calls(t, form(named("sdp")), hostile(200)),
    # POST /v1/live/sessions
    "live_query_name": lambda t: live(t, {"transport": TRANSPORT}, quote(hostile(100)) + "=1"),
    "live_field": lambda t: live(t, {hostile(20_000, JSON_UNIT): 1}),
    "live_transport_field": lambda t: live(t, {"transport": {hostile(100, JSON_UNIT): 1}}),
    "live_session_field": lambda t: live(
        t, {"session": {hostile(20_000, JSON_UNIT): 1}, "transport": TRANSPORT}
    ),
    "live_profile": lambda t: live(
        t, {"session": {"profile": hostile(20_000, JSON_UNIT)}, "transport": TRANSPORT}
    ),
    "live_model": lambda t: live(
        t, {"session": {"model": hostile(100, JSON_UNIT)}, "transport": TRANSPORT}
    ),
    # The hangup's path
    "hangup_id": lambda t: hangup(t, quote(hostile(2_000))),
    "hangup_id_raw": lambda t: hangup(t, hostile(2_000, HEADER_UNIT)),
    "hangup_live_id": lambda t: hangup(t, quote(hostile(2_000)), LIVE),
    # Headers
    "authorization": lambda t: mint(t, {}, {"authorization": "Bearer " + hostile(8_000)}),
    "authorization_scheme": lambda t: mint(t, {}, {"authorization": hostile(8_000) + " " + t}),
    "origin": lambda t: mint(t, {"x": 1}, {"origin": hostile(8_000)}),
    "content_type": lambda t: mint(t, {"x": 1}, {"content-type": hostile(8_000)}),
}


@pytest.mark.parametrize("place", PLACES.values(), ids=PLACES.keys())
def test_a_hostile_name_is_refused_briefly_and_without_hidden_characters(
    handler: Any, issuer: Issuer, aws: Aws, logs: LogCapture, place: Any
) -> None:
    logs.debug()  # whatever the function logs at any level counts
    measured = send(handler, place(issuer.token()), aws, logs)

    assert 400 <= measured.reply.status < 500
    if measured.reply.status != 404:  # an unknown path is answered before any log line
        assert measured.log, "nothing was logged: the capture is broken"


def test_the_checks_see_a_hidden_character_a_long_answer_and_spent_quota() -> None:
    """The bounds are not vacuous: each check fails on what it is there to catch."""
    problem = {"type": "t", "title": "t", "status": 400, "detail": "d", "error": {}}
    headers = {"content-type": "application/problem+json"}

    def measured(
        document: Any, log: str = "", after: tuple[Any, ...] = (), writes: tuple[str, ...] = ()
    ) -> Measured:
        reply = Reply(400, headers, json.dumps(document))
        return Measured(reply, log, 0.001, list(writes), [], list(after))

    assert_bounded(measured(problem, '{"message": "request refused"}'))
    assert_bounded(measured(problem, writes=("UpdateItem limit#hangup#u#day#1",)))
    for bad in (
        measured(problem | {"detail": "the field '\u202e' is not allowed"}),
        measured(problem | {"field": "x" * 3000}),
        measured(problem, json.dumps({"field": "a\u2066b"}, ensure_ascii=False)),
        measured(problem, "x" * 5000),
        measured(problem, after=({"pk": {"S": "quota#u#day#1"}},)),
        measured(problem, writes=("TransactWriteItems quota#u#day#1",)),
    ):
        with pytest.raises(AssertionError):
            assert_bounded(bad)
