"""Battery 5, continued: every parser on the request path, fuzzed with hostile shapes through
the real handler (moto, the fake internet): the JSON bodies of a mint and a Live create, the
SDP offer, the multipart form, the query string, the headers (Content-Type parameters, Origin,
Authorization) and the hangup's path.

Each case holds the answer to tests/support/bounds.py: no 500, a problem document for every
refusal (or a success where the input is valid), an answer, log lines and CPU time within
bounds, nothing hidden in the answer or the logs, and no quota spent by a refusal. Every
example is a new user, so a valid call succeeds (and may spend) instead of meeting the
previous example's limits.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.lambda_events import http_event
from tests.support.aws import Aws
from tests.support.bounds import assert_bounded, measure
from tests.support.env import ORIGIN
from tests.support.handler import CALLS
from tests.support.identity import Issuer
from tests.support.internet import OFFER_SDP
from tests.support.logs import LogCapture

LIVE = "/v1/live/sessions"
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))


class Target:
    """The handler under fuzz, warmed (its container built, the key set fetched), and a new
    user's token for each example."""

    def __init__(self, handler: Any, issuer: Issuer, aws: Aws, logs: LogCapture) -> None:
        self.handler, self.issuer, self.aws, self.logs = handler, issuer, aws, logs
        self._users = itertools.count()
        self.send(hangup_event(self.token(), "rtc_warm"))  # builds the calls routes too

    def token(self) -> str:
        return self.issuer.token(f"fuzz-{next(self._users)}")

    def send(self, event: dict[str, Any], *, misconfigured_ok: bool = False) -> int:
        # Every write is seen (tests/support/bounds.py); the table's scans would grow with
        # every call placed and slow the battery down.
        measured = measure(self.handler, event, self.aws, self.logs, compare_table=False)
        assert_bounded(measured, spends=True, misconfigured_ok=misconfigured_ok)
        return measured.reply.status


@pytest.fixture
def target(
    make_handler: Callable[..., Any], issuer: Issuer, aws: Aws, logs: LogCapture
) -> Iterator[Target]:
    yield Target(make_handler(QUOTAS="1000000/minute"), issuer, aws, logs)


def hangup_event(token: str, call_id: str, route: str = CALLS) -> dict[str, Any]:
    return http_event("POST", f"{route}/{call_id}/hangup", {"authorization": f"Bearer {token}"})


def call_event(
    token: str, body: bytes, content_type: str | None, query: str = ""
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}", "content-type": content_type}
    encoded = base64.b64encode(body).decode()
    return http_event("POST", CALLS, headers, encoded or None, base64=True, raw_query=query)


def json_event(token: str, path: str, body: str, query: str = "") -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    return http_event("POST", path, headers, body, raw_query=query)


# --- what a hostile caller writes ------------------------------------------------------------

HIDDEN = ["\u202e", "\u2066", "\u200b", "\ufeff", "\u2028", "\x00", "\x1b", "\x7f", "\n", "\r"]
SYNTAX = ['"', "'", "(", ")", ";", "=", ",", "\\", "%", "&", "+", ":", "/", "-", " ", "\t"]
hostile_text = st.text(
    st.characters(exclude_categories=["Cs"]) | st.sampled_from(HIDDEN + SYNTAX), max_size=40
)
repeated = st.builds(
    lambda unit, times: unit * times,
    st.text(st.sampled_from(HIDDEN + SYNTAX + ["A"]), min_size=1, max_size=4),
    st.integers(1, 3000),
)
names = (
    st.sampled_from(["sdp", "session", "profile", "model", "audio", "voice", ""])
    | hostile_text
    | repeated
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | hostile_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=12,
)
deep_json = st.builds(
    lambda opener, depth: opener * depth,
    st.sampled_from(["[", '{"a":', '{"session":']),
    st.integers(1, 5000),
)
session_objects = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["realtime", "transcription"]) | json_values,
        "model": st.sampled_from(["gpt-realtime-2.1", "gpt-live-1"]) | json_values,
        "audio": st.fixed_dictionaries(
            {},
            optional={
                "output": st.fixed_dictionaries(
                    {}, optional={"voice": st.sampled_from(["marin", "cedar"]) | json_values}
                )
            },
        )
        | json_values,
        "profile": st.sampled_from(["assistant", "support-agent", "live-assistant"]) | names,
    },
) | st.dictionaries(names, json_values, max_size=3)

sdp_lines = (
    st.sampled_from(OFFER_SDP.split("\r\n")[:-1] + ["m=audio 9 RTP 0", "a=x", "v=1", "x", ""])
    | hostile_text
)
sdps = st.one_of(
    st.just(OFFER_SDP),
    st.builds(
        lambda lines, newline: newline.join(lines),
        st.lists(sdp_lines, max_size=30),
        st.sampled_from(["\r\n", "\n", "\r"]),
    ),
    st.builds(
        lambda line, times: "v=0\r\nm=audio 9 RTP 0\r\n" + line * times,
        st.sampled_from(["a=x\r\n", "a=\x00\r\n", "\r\n", "a=" + "y" * 500 + "\r\n"]),
        st.integers(1, 8000),
    ),
    hostile_text,
)

# --- the multipart form ----------------------------------------------------------------------

TOKEN_BCHARS = "0123456789abcdefABCDEF'+_-."
valid_boundaries = st.sampled_from(
    [
        "b",
        "----WebKitFormBoundaryo1bX8B6PFJzFLKRK",
        "------------------------a974a6f2fbcee930",
        "x" * 70,
        "a b:c",
        "(=?)",
    ]
) | st.text(TOKEN_BCHARS + "(),/:=? ", min_size=1, max_size=70).filter(
    lambda b: not b.endswith(" ")
)
boundaries = (
    valid_boundaries | valid_boundaries | st.sampled_from(["x" * 71, "ends ", ""]) | hostile_text
)
parameters = (
    st.sampled_from(
        [
            'filename="offer.sdp"',
            "filename*=UTF-8''a",
            "x=" + "(" * 1000,
            "x=" + "(" * 400,
            'name="x"',
            "name==?utf-8?q?sdp?=",
            ";;;;;",
            'x="(a comment)"',
            "size=3",
        ]
    )
    | hostile_text
)
dispositions = st.one_of(
    st.builds('Content-Disposition: form-data; name="{}"'.format, names),
    st.builds("Content-Disposition: form-data; name={}".format, names),
    st.builds('Content-Disposition: form-data; name="{}"; {}'.format, names, parameters),
    st.sampled_from(
        [
            "Content-Disposition: form-data",
            'Content-Disposition: attachment; name="sdp"',
            'content-disposition:form-data;name="sdp"',
        ]
    ),
)
other_headers = (
    st.sampled_from(
        [
            "Content-Type: application/sdp",
            "Content-Type: application/json",
            "Content-Type: multipart/mixed; boundary=c",
            "Content-Length: 5",
            "Content-Transfer-Encoding: 8bit",
            "Content-Transfer-Encoding: base64",
            " folded=1",
            "X-Other: 1",
            "Content-Type: " + "t" * 600,
        ]
    )
    | hostile_text
)
contents = (
    st.sampled_from(
        [
            OFFER_SDP,
            "{}",
            '{"type":"realtime","model":"gpt-realtime-2.1"}',
            '{"profile":"support-agent"}',
            "",
            "--c\r\n\r\nx\r\n--c--",
        ]
    )
    | json_values.map(json.dumps)
    | deep_json
    | hostile_text
)
# What OpenAI's SDKs and browsers send: the parts a call reads, well formed.
SDP_PARTS = [
    (['Content-Disposition: form-data; name="sdp"', "Content-Type: application/sdp"], OFFER_SDP),
    (['Content-Disposition: form-data; name="sdp"'], OFFER_SDP),
]
SESSION_PARTS = [
    (
        ['Content-Disposition: form-data; name="session"', "Content-Type: application/json"],
        '{"type":"realtime"}',
    ),
    (
        ['Content-Disposition: form-data; name="session"; filename="blob"'],
        '{"model":"gpt-realtime-2.1-mini","audio":{"output":{"voice":"cedar"}}}',
    ),
]
odd_parts = st.tuples(st.lists(dispositions | other_headers, max_size=4), contents)


@dataclass
class Form:
    """A multipart body in the making: what OpenAI's SDKs send, until a mutation changes it."""

    boundary: str
    parts: list[tuple[list[str], str]]
    content_type: str = ""
    newline: str = "\r\n"
    preamble: str = ""
    closing: str = "--{b}--\r\n"
    empty_parts: int = 0

    def encode(self) -> tuple[bytes, str]:
        b, nl = self.boundary, self.newline
        text = self.preamble + f"--{b}\r\n\r\n" * self.empty_parts
        for headers, content in self.parts:
            text += f"--{b}{nl}" + "".join(h + nl for h in headers) + nl + content + nl
        text += self.closing.format(b=b).replace("\r\n", nl)
        quoted = b if all(c in TOKEN_BCHARS for c in b) else f'"{b}"'
        return text.encode(), (self.content_type or "multipart/form-data; boundary={}").format(
            quoted
        )


def _set(name: str, values: st.SearchStrategy[Any]) -> Callable[[Form, st.DrawFn], None]:
    return lambda form, draw: setattr(form, name, draw(values))


def _insert_part(form: Form, draw: st.DrawFn) -> None:
    form.parts.insert(draw(st.integers(0, len(form.parts))), draw(odd_parts))


def _add_header(form: Form, draw: st.DrawFn) -> None:
    if form.parts:
        headers, content = form.parts[0]
        form.parts[0] = ([*headers, draw(dispositions | other_headers)], content)


def _replace_content(form: Form, draw: st.DrawFn) -> None:
    if form.parts:
        form.parts[0] = (form.parts[0][0], draw(contents))


MUTATIONS: list[Callable[[Form, st.DrawFn], None]] = [
    _set("boundary", boundaries),
    _set(
        "content_type",
        st.sampled_from(
            [
                "multipart/form-data;boundary={}; charset=utf-8",
                "Multipart/Form-Data; boundary={}; boundary=x",
                "multipart/form-data; {}",
                "multipart/form-data; boundary={};;;;;",
                "multipart/form-data; boundary={}; " + "q" * 300,
                "multipart/mixed; boundary={}",
            ]
        ),
    ),
    _set("newline", st.sampled_from(["\n", "\r", " \r\n"])),
    _set("preamble", st.sampled_from(["\r\n", "preamble\r\n", "\r\n\r\n"]) | hostile_text),
    _set(
        "closing",
        st.sampled_from(
            ["--{b}--", "", "--{b}  \r\n", "--{b}--\r\nepilogue", "--{b}\r\n", "--{b}--\r\n\r\n"]
        ),
    ),
    _set("empty_parts", st.sampled_from([1, 10, 9000])),
    _insert_part,
    lambda form, draw: form.parts.append(draw(st.sampled_from(SDP_PARTS + SESSION_PARTS))),
    _add_header,
    _replace_content,
    lambda form, draw: form.parts.reverse(),
    lambda form, draw: form.parts.clear(),
]


@st.composite
def forms(draw: st.DrawFn) -> tuple[bytes, str]:
    """A multipart body and its Content-Type: what OpenAI's SDKs send, then up to three
    mutations (framing, headers, parts, the Content-Type) towards anything hostile."""
    parts = [draw(st.sampled_from(SDP_PARTS))]
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(SESSION_PARTS)))
    form = Form(draw(valid_boundaries), parts)
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), max_size=3)):
        mutation(form, draw)
    return form.encode()


@given(form=forms(), query=st.sampled_from(["", "profile=assistant", "profile=support-agent"]))
@FUZZ
def test_any_multipart_form(target: Target, form: tuple[bytes, str], query: str) -> None:
    body, content_type = form
    status = target.send(call_event(target.token(), body, content_type, query))

    assert status in (201, 400, 403, 413, 415)


@given(
    sdp=sdps,
    content_type=st.sampled_from(
        ["application/sdp", "APPLICATION/SDP; charset=utf-8", "text/plain", None]
    ),
)
@FUZZ
def test_any_sdp_offer(target: Target, sdp: str, content_type: str | None) -> None:
    status = target.send(call_event(target.token(), sdp.encode(), content_type))

    assert status in (201, 400, 413, 415)


query_names = (
    st.sampled_from(["profile", "profile", "sdp", "", "Profile", "profile "]) | hostile_text
)
query_values = st.sampled_from(["assistant", "support-agent", "live-assistant", ""]) | hostile_text
queries = st.one_of(
    st.lists(st.tuples(query_names, query_values), max_size=4).map(
        lambda pairs: "&".join(f"{quote(n)}={quote(v)}" for n, v in pairs)
    ),
    st.lists(st.tuples(query_names, query_values), max_size=4).map(
        lambda pairs: "&".join(f"{n}={v}" for n, v in pairs)
    ),
    st.sampled_from(
        [
            "profile=assistant&profile=assistant",
            "profile",
            "&&&",
            "profile=%ZZ",
            "=x",
            "profile=" + "%41" * 400,
            "profile=assistant&",
        ]
    ),
    repeated,
)


@given(query=queries, route=st.sampled_from([CALLS, LIVE]))
@FUZZ
def test_any_query_string(target: Target, query: str, route: str) -> None:
    token = target.token()
    if route == CALLS:
        event = call_event(token, OFFER_SDP.encode(), "application/sdp", query)
    else:
        event = json_event(token, LIVE, json.dumps({"transport": {"type": "webrtc"}}), query)
    status = target.send(event)

    assert status in (201, 400, 403)


mint_bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "profile": names,
            "session": session_objects,
            "expires_after": st.fixed_dictionaries(
                {}, optional={"anchor": names, "seconds": st.integers(-5, 1000) | json_values}
            )
            | json_values,
        },
    ).map(json.dumps),
    st.dictionaries(names, json_values, max_size=4).map(json.dumps),
    json_values.map(json.dumps),
    deep_json,
    hostile_text,
)


@given(body=mint_bodies)
@FUZZ
def test_any_mint_body(target: Target, body: str) -> None:
    status = target.send(json_event(target.token(), "/v1/realtime/client_secrets", body))

    assert status in (200, 400, 403, 413, 415)


live_bodies = st.one_of(
    st.fixed_dictionaries(
        {
            "transport": st.just({"type": "webrtc", "sdp": OFFER_SDP})
            | st.fixed_dictionaries({"type": st.just("webrtc"), "sdp": sdps})
        },
        optional={"session": session_objects},
    ).map(json.dumps),
    st.fixed_dictionaries(
        {},
        optional={
            "session": session_objects,
            "transport": st.fixed_dictionaries(
                {}, optional={"type": st.just("webrtc") | names, "sdp": sdps | json_values}
            )
            | json_values,
        },
    ).map(json.dumps),
    st.dictionaries(names, json_values, max_size=4).map(json.dumps),
    deep_json,
    hostile_text,
)


@given(body=live_bodies, query=st.sampled_from(["", "profile=live-assistant", "profile=assistant"]))
@FUZZ
def test_any_live_create(target: Target, body: str, query: str) -> None:
    """This deploy has no call watcher, which a GPT-Live session needs: a Live create that
    passes every check of the request is answered 500 `misconfigured`, before anything is
    spent."""
    status = target.send(json_event(target.token(), LIVE, body, query), misconfigured_ok=True)

    assert status in (400, 403, 413, 415, 500)


authorizations = (
    st.sampled_from(
        [
            "Bearer {t}",
            "bearer  {t}",
            "BEARER {t}",
            "Bearer {t}x",
            "Bearer {t}, Bearer {t}",
            "Basic {t}",
            "Bearer",
            "Bearer " + "a." * 3000,
            "{t}",
            " Bearer {t} ",
            "Bearer\t{t}",
        ]
    )
    | hostile_text
    | repeated
)
content_types = (
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/problem+json",
            'application/json; x="(',
            "application/json" + ";" * 3000,
            "text/plain",
            "",
        ]
    )
    | hostile_text
)
origins = st.sampled_from([ORIGIN, ORIGIN + "/", "null", ORIGIN.upper()]) | hostile_text | repeated


@given(
    authorization=authorizations,
    content_type=content_types,
    origin=origins,
    method=st.sampled_from(["POST", "OPTIONS", "GET"]),
)
@FUZZ
def test_any_headers(
    target: Target, authorization: str, content_type: str, origin: str, method: str
) -> None:
    headers = {
        "authorization": authorization.replace("{t}", target.token()),
        "content-type": content_type,
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": content_type,
    }
    # A body the policy refuses: a mint that passed would spend, which is not what is fuzzed.
    event = http_event(method, "/v1/realtime/client_secrets", headers, '{"x": 1}')
    status = target.send(event)

    assert status in (204, 400, 401, 405, 415)


call_ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9_-]{1,140}", fullmatch=True),
    hostile_text.map(quote),
    hostile_text.filter(lambda s: "/" not in s),
    repeated,
    st.sampled_from(["rtc_1\n", "..", "rtc_1/hangup", "%2F", "rtc_" + "a" * 125]),
)


@given(
    call_id=call_ids,
    route=st.sampled_from([CALLS, LIVE]),
    method=st.sampled_from(["POST", "OPTIONS", "GET"]),
)
@FUZZ
def test_any_hangup_path(target: Target, call_id: str, route: str, method: str) -> None:
    event = hangup_event(target.token(), call_id, route)
    event["requestContext"]["http"]["method"] = method
    status = target.send(event)

    assert status in (204, 404, 405)
