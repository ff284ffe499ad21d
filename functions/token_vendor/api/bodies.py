"""Reading what a caller sends: the JSON body of a mint or a Live create, the offer (and
session) of a call, the query string.

Every reader is bounded: a size cap before anything is parsed, work linear in what was sent,
refusals as domain errors naming the field, a caller's names quoted only through `echo`. The
routes read all of it before anything is spent (docs/design.md).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection
from typing import Any
from urllib.parse import unquote_plus

from ..core.echo import echo
from ..core.errors import BodyTooLarge, InvalidRequest, UnsupportedMediaType
from ..core.parsing import NotJson, json_object
from .http import Request

MAX_BODY_BYTES = 16 * 1024
MAX_CALL_BODY_BYTES = 64 * 1024  # an SDP offer (at most 32 KiB) and the session part
MAX_QUERY_CHARS = 1024  # `profile=NAME` is all a route reads


def call_request(request: Request) -> tuple[str, dict[str, Any], str | None]:
    """The offer, the `session` part and the `profile` query parameter of a call request:
    `application/sdp` (the raw offer) or `multipart/form-data` (`sdp`, optional `session`)."""
    profile = query_parameters(request, ("profile",)).get("profile")
    data = body_bytes(request, MAX_CALL_BODY_BYTES)
    header = request.headers.get("content-type", "")
    media_type = _media_type(header)
    if not data.strip():
        raise InvalidRequest("the SDP offer is empty", "sdp")
    if media_type == "application/sdp":
        return _text(data, "sdp"), {}, profile
    if media_type != "multipart/form-data":
        raise UnsupportedMediaType("the body must be application/sdp or multipart/form-data")
    # Imported for the first multipart offer only: its patterns cost a mint's cold start 2 ms
    # (docs/performance.md), and a mint never reads a form.
    from . import multipart

    _, parameters = multipart.content_type(header)
    parts = multipart.read_form(data, multipart.boundary(parameters), ("sdp", "session"))
    if "sdp" not in parts:
        raise InvalidRequest("the 'sdp' part is missing", "sdp")
    session: Any = {}
    if "session" in parts:
        try:
            session = json_object(parts["session"])
        except NotJson:
            raise InvalidRequest("the 'session' part is not valid JSON", "session") from None
        except ValueError:  # NotAnObject
            raise InvalidRequest("the 'session' part must be a JSON object", "session") from None
    return _text(parts["sdp"], "sdp"), session, profile


def query_parameters(request: Request, allowed: Collection[str]) -> dict[str, str]:
    """The query string's parameters, each one `allowed`, each at most once."""
    raw = request.raw_query
    if len(raw) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"the query string must be at most {MAX_QUERY_CHARS} characters")
    found: dict[str, str] = {}
    for pair in raw.split("&"):
        if not pair:
            continue
        name, _, value = (unquote_plus(half) for half in pair.partition("="))
        if name not in allowed:
            shown = echo(name)
            raise InvalidRequest(f"the query parameter '{shown}' is not allowed here", shown)
        if name in found:
            raise InvalidRequest(f"the query parameter '{name}' is given twice", name)
        found[name] = value
    return found


def _media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def _text(data: bytes, field_name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"the '{field_name}' part is not UTF-8 text", field_name) from None


def body_bytes(request: Request, limit: int) -> bytes:
    if request.body is None:
        return b""
    try:
        data = (
            base64.b64decode(request.body, validate=True)
            if request.base64
            else request.body.encode()
        )
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidRequest("the body could not be decoded") from None
    if len(data) > limit:
        raise BodyTooLarge(f"the body must be at most {limit} bytes")
    return data


def json_body(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    data = body_bytes(request, limit)
    if not data.strip():
        return {}
    media_type = _media_type(request.headers.get("content-type", ""))
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise UnsupportedMediaType("the body must be application/json")
    try:
        return json_object(data)
    except NotJson:
        raise InvalidRequest("the body is not valid JSON") from None
    except ValueError:  # NotAnObject
        raise InvalidRequest("the body must be a JSON object") from None


def live_request(request: Request) -> tuple[dict[str, Any], str | None]:
    """A GPT-Live create in OpenAI's shape (JSON `{session, transport}`, the offer inside) and
    the `profile` query parameter."""
    profile = query_parameters(request, ("profile",)).get("profile")
    body = json_body(request, MAX_CALL_BODY_BYTES)
    if not body:
        raise InvalidRequest("the body must be {session, transport: {type: 'webrtc', sdp}}", "")
    return body, profile
