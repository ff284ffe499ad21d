"""A strict reader of `multipart/form-data` (RFC 7578, framed as RFC 2046 says): the subset
OpenAI's SDKs, browsers' FormData and `curl -F` send, and nothing more.

Why not the standard library's email parser: it is built to accept any mail, so it recurses
into a header's comments (1,000 `(` in a 1 KB body exhaust the stack: a 500 and a 171 KB
traceback) and walks every part before anyone looks at a name (9,000 empty parts: most of a
second of CPU). Here every step is bounded before it is taken, and the first thing out of
place is refused by name:

- one boundary, from the Content-Type's `boundary` parameter (RFC 2046's 1 to 70 characters);
- CRLF framing: the body starts with the first boundary line (after at most an empty line:
  no preamble) and ends with the closing one (an optional CRLF after it, no epilogue);
- per part, header lines of at most MAX_HEADER_LINE bytes, each header at most once:
  `Content-Disposition: form-data; name="..."` (a `filename` is allowed and ignored) and,
  optionally, `Content-Type` (not read), `Content-Length` (OkHttp's, so the openai-java SDK's:
  it must be the part's length) and `Content-Transfer-Encoding` of 7bit, 8bit or binary
  (Apache HttpClient's default; RFC 7578 deprecates it, and any other value would need
  decoding); no continuation lines, no other header, no `filename*`, no encoded words, no
  nested multipart;
- at most MAX_PARTS parts, each a field the caller of `read_form` accepts, each once, names of
  at most MAX_NAME characters; at most MAX_PARAMETERS parameters in a header.

The work is linear in the body (a bounded number of `bytes.find` calls, each from where the
last one ended) and constant per part, with no recursion; the body's size is capped before
(`bodies.MAX_CALL_BODY_BYTES`).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from ..core.echo import echo
from ..core.errors import InvalidRequest

MAX_PARTS = 2  # `sdp` and `session`: the only fields a call has
MAX_HEADER_LINE = 512  # bytes of one part header line, its CRLF not counted
PART_HEADERS = (
    b"content-disposition", b"content-type", b"content-length", b"content-transfer-encoding",
)  # fmt: skip
IDENTITY_ENCODINGS = (b"7bit", b"8bit", b"binary")
MAX_NAME = 64  # characters of a field's name
MAX_CONTENT_TYPE = 256  # characters of the request's Content-Type header
MAX_PARAMETERS = 4  # `; name=value` in one header (empty ones count)

_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# One `; name=value` (RFC 9110 5.6.6): a token, or a quoted string without quoted pairs (no
# boundary, field name or file name this reader accepts needs a backslash or a quote).
# Each match consumes its `;`, and no two parts of the pattern can match the same text, so
# scanning a header is linear.
_PARAMETER = re.compile(rf'[ \t]*;[ \t]*(?:({_TCHARS})=(?:({_TCHARS})|"([^"\\\r\n]*)"))?[ \t]*')
_MEDIA_TYPE = re.compile(rf"[ \t]*({_TCHARS}/{_TCHARS})[ \t]*")
_DISPOSITION = re.compile(r"[ \t]*form-data[ \t]*", re.IGNORECASE)
_HEADER_NAME = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*")
# RFC 2046 5.1.1: bchars, at most 70, not ending in a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


def content_type(header: str) -> tuple[str, dict[str, str]]:
    """A Content-Type header's media type (lowercase) and parameters (names lowercase);
    InvalidRequest when it cannot be read, or names a parameter twice."""
    if len(header) > MAX_CONTENT_TYPE:
        raise InvalidRequest(f"the Content-Type must be at most {MAX_CONTENT_TYPE} characters")
    match = _MEDIA_TYPE.match(header)
    if match is None:
        raise InvalidRequest("the Content-Type header cannot be read")
    return match.group(1).lower(), _parameters(header, match.end(), "the Content-Type header")


def boundary(parameters: dict[str, str]) -> str:
    value = parameters.get("boundary")
    if value is None:
        raise InvalidRequest("the multipart Content-Type has no boundary")
    if not _BOUNDARY.fullmatch(value):
        raise InvalidRequest("the multipart boundary is not 1 to 70 of RFC 2046's characters")
    return value


def read_form(data: bytes, boundary: str, fields: Collection[str]) -> dict[str, bytes]:
    """The parts of a form, by name: only `fields`, each at most once (in any order)."""
    dash = b"--" + boundary.encode("ascii")
    delimiter = b"\r\n" + dash
    if data.startswith(delimiter):  # an empty preamble: werkzeug's encoder writes one
        data = data[2:]
    if data in (dash + b"--", dash + b"--\r\n"):
        return {}  # a form without a field
    if not data.startswith(dash + b"\r\n"):
        raise InvalidRequest("the multipart body must start with its boundary line and CRLF")
    parts: dict[str, bytes] = {}
    position = len(dash) + 2
    while True:
        if len(parts) == MAX_PARTS:
            raise InvalidRequest(f"the form must have at most {MAX_PARTS} parts")
        headers, position = _part_headers(data, position)
        name = _field_name(headers)
        if name not in fields:
            raise InvalidRequest(f"the part '{echo(name)}' is not allowed here", echo(name))
        if name in parts:
            raise InvalidRequest(f"the part '{name}' is given twice", name)
        end = data.find(delimiter, position)
        if end < 0:
            raise InvalidRequest("the multipart body has no closing boundary line")
        parts[name] = data[position:end]
        _check_length(headers, end - position, name)
        position = end + len(delimiter)
        after = data[position : position + 2]
        if after == b"--":
            if data[position + 2 :] not in (b"", b"\r\n"):
                raise InvalidRequest("nothing may follow the multipart body's closing boundary")
            return parts
        if after != b"\r\n":
            raise InvalidRequest("a multipart boundary line must end right after the boundary")
        position += 2


def _part_headers(data: bytes, position: int) -> tuple[dict[bytes, bytes], int]:
    """A part's header lines from `position` to the empty line, by lowercase name, and where
    its content starts. At most one line per header in PART_HEADERS, so at most that many
    lines are read."""
    headers: dict[bytes, bytes] = {}
    while True:
        end = data.find(b"\r\n", position, position + MAX_HEADER_LINE + 2)
        if end < 0:
            raise InvalidRequest(
                f"a part's header line must be at most {MAX_HEADER_LINE} bytes, ending in CRLF"
            )
        if end == position:  # the empty line: the content follows
            return headers, end + 2
        match = _HEADER_NAME.match(data, position, end)
        if match is None:
            raise InvalidRequest("a part's header line cannot be read")
        header = match.group(1).lower()
        if header not in PART_HEADERS:
            shown = echo(match.group(1).decode("ascii"))
            raise InvalidRequest(f"the part header '{shown}' is not allowed")
        if header in headers:
            raise InvalidRequest(f"a part has two {match.group(1).decode('ascii')} headers")
        headers[header] = data[match.end() : end].rstrip(b" \t")
        position = end + 2


def _check_length(headers: dict[bytes, bytes], length: int, name: str) -> None:
    declared = headers.get(b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) != length):
        raise InvalidRequest(f"the part '{name}' is not as long as its Content-Length", name)
    encoding = headers.get(b"content-transfer-encoding")
    if encoding is not None and encoding.lower() not in IDENTITY_ENCODINGS:
        raise InvalidRequest(f"the part '{name}' must not be encoded (7bit, 8bit or binary)", name)


def _field_name(headers: dict[bytes, bytes]) -> str:
    """The `name` of `Content-Disposition: form-data; name="..."` (RFC 7578 4.2)."""
    disposition = headers.get(b"content-disposition")
    if disposition is None:
        raise InvalidRequest("a part has no Content-Disposition naming its field")
    value = disposition.decode("utf-8", errors="replace")
    match = _DISPOSITION.match(value)
    if match is None:
        raise InvalidRequest("a part's Content-Disposition must be 'form-data'")
    parameters = _parameters(value, match.end(), "a part's Content-Disposition")
    if unknown := parameters.keys() - {"name", "filename"}:
        shown = echo(min(unknown))
        raise InvalidRequest(f"the Content-Disposition parameter '{shown}' is not allowed")
    name = parameters.get("name")
    if name is None:
        raise InvalidRequest("a part's Content-Disposition has no name")
    if len(name) > MAX_NAME:
        raise InvalidRequest(f"a part's name must be at most {MAX_NAME} characters", echo(name))
    return name


def _parameters(header: str, position: int, what: str) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for _ in range(MAX_PARAMETERS + 1):
        if position == len(header):
            return parameters
        match = _PARAMETER.match(header, position)
        if match is None or match.end() == position:
            raise InvalidRequest(f"{what} cannot be read")
        position = match.end()
        name, token, quoted = match.groups()
        if name is None:  # an empty parameter (`;;`), which RFC 9110 allows
            continue
        name = name.lower()
        if name in parameters:
            raise InvalidRequest(f"{what} names its '{echo(name)}' parameter twice")
        parameters[name] = token if token is not None else quoted
    raise InvalidRequest(f"{what} must have at most {MAX_PARAMETERS} parameters")
