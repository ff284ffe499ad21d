"""Content Security Policy source matching, as CSP Level 3 defines it (§6.7.2, "Does url
match expression in origin with redirect count?"), for the tests of the page's CSP.

Only what a `connect-src` list of this project can hold: keywords, scheme-sources and
host-sources. No redirects (redirect count 0), no nonces or hashes (they never match URLs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}
# CSP3 §2.3.1 source grammar.
_SCHEME_SOURCE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):$")
_HOST_SOURCE = re.compile(
    r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?"
    r"(?P<host>\*|(?:\*\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)"
    r"(?::(?P<port>[0-9]+|\*))?"
    r"(?P<path>/[^;,\s]*)?$"
)


@dataclass(frozen=True)
class Url:
    scheme: str
    host: str
    port: int | None
    path: str

    @classmethod
    def parse(cls, url: str) -> Url:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        # The URL standard keeps no port that is the scheme's default.
        port = None if parts.port == DEFAULT_PORTS.get(scheme) else parts.port
        return cls(scheme, (parts.hostname or "").lower(), port, parts.path)

    @property
    def effective_port(self) -> int | None:
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.scheme)

    @property
    def origin(self) -> tuple[str, str, int | None]:
        return (self.scheme, self.host, self.effective_port)


def directive(policy: str, name: str) -> list[str]:
    """A directive's source list; the first occurrence wins (§2.2.1, duplicates are ignored)."""
    for part in policy.split(";"):
        tokens = part.split()
        if tokens and tokens[0].lower() == name:
            return tokens[1:]
    return []


def effective_sources(policy: str, name: str) -> list[str]:
    """A fetch directive falls back to default-src when absent (§6.8.3)."""
    sources = directive(policy, name)
    names = [p.split()[0].lower() for p in policy.split(";") if p.split()]
    return sources if name in names else directive(policy, "default-src")


def scheme_part_matches(a: str, b: str) -> bool:
    """§6.7.2.7: an expression's scheme also matches its secure upgrades."""
    a, b = a.lower(), b.lower()
    return (
        a == b
        or (a == "http" and b == "https")
        or (a == "ws" and b in ("wss", "http", "https"))
        or (a == "wss" and b == "https")
    )


def host_part_matches(pattern: str, host: str) -> bool:
    """§6.7.2.8: exact (ASCII case-insensitive), or `*.` for strict subdomains."""
    pattern, host = pattern.lower(), host.lower()
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return host.endswith(pattern[1:])
    return pattern == host


def port_part_matches(port: str | None, url: Url) -> bool:
    """§6.7.2.9: no port means the URL's scheme's default port."""
    if port == "*":
        return True
    wanted = None if port is None else int(port)
    if wanted == url.port:
        return True
    return url.port is None and wanted == DEFAULT_PORTS.get(url.scheme)


def path_part_matches(path_a: str, path_b: str) -> bool:
    """§6.7.2.10: a path ending in "/" is a prefix; any other path matches only itself."""
    if path_a == "":
        return True
    if path_a == "/" and path_b == "":
        return True
    exact = not path_a.endswith("/")
    list_a, list_b = path_a.split("/"), path_b.split("/")
    if len(list_a) > len(list_b):
        return False
    if exact and len(list_a) != len(list_b):
        return False
    if not exact:
        assert list_a[-1] == ""
        list_a = list_a[:-1]
    return all(unquote(a) == unquote(b) for a, b in zip(list_a, list_b, strict=False))


def matches(expression: str, url: str, self_origin: str) -> bool:
    """§6.7.2.6 "Does url match expression in origin with redirect count?" (count 0)."""
    target, origin = Url.parse(url), Url.parse(self_origin)
    lowered = expression.lower()
    if lowered == "*":
        # Any URL whose scheme is an HTTP(S) scheme or the origin's own.
        return target.scheme in ("http", "https") or target.scheme == origin.scheme
    if lowered == "'self'":
        if target.origin == origin.origin:
            return True
        # §6.7.2.6 step 4.2: the same host and port (or both default), upgraded or not.
        same_port = target.port == origin.port or (
            target.effective_port == DEFAULT_PORTS.get(target.scheme)
            and origin.effective_port == DEFAULT_PORTS.get(origin.scheme)
        )
        return (
            target.host == origin.host
            and same_port
            and (
                target.scheme in ("https", "wss")
                or (origin.scheme == "http" and target.scheme in ("http", "ws"))
            )
        )
    if lowered.startswith("'"):
        return False  # 'none', nonces, hashes, 'unsafe-*': never a URL match
    scheme = _SCHEME_SOURCE.match(expression)
    if scheme:
        return scheme_part_matches(scheme.group(1), target.scheme)
    host = _HOST_SOURCE.match(expression)
    if not host or not target.host:
        return False
    if host.group("scheme"):
        if not scheme_part_matches(host.group("scheme"), target.scheme):
            return False
    elif not scheme_part_matches(origin.scheme, target.scheme):
        return False
    if not host_part_matches(host.group("host"), target.host):
        return False
    if not port_part_matches(host.group("port"), target):
        return False
    return path_part_matches(host.group("path") or "", target.path)


def allows(sources: list[str], url: str, self_origin: str) -> bool:
    """§6.7.2.5 "Does url match source list": 'none' alone matches nothing."""
    if [s.lower() for s in sources] == ["'none'"]:
        return False
    return any(matches(s, url, self_origin) for s in sources)
