"""ICE servers in HTTP ``Link`` headers (RFC 9725 §4.6, RFC 8288).

A WHIP or WHEP endpoint tells its clients which STUN and TURN servers to use with one
``Link`` value per server URL::

    Link: <turn:turn.example.net:3478?transport=udp>; rel="ice-server";
          username="user"; credential="pass"; credential-type="password"

Attribute values are RFC 9110 quoted strings (``"`` and ``\\`` escaped with a
backslash), so credentials may hold commas, semicolons and quotes. A value that is not
printable ASCII (a control character, or any non-ASCII letter) cannot be sent as a quoted
string; it travels as an RFC 8187 extended value instead (``username*=UTF-8''%C3%A9``).
:func:`parse_ice_servers` reads both forms, from several ``Link`` headers or from one
comma-joined value (which is how ``fetch`` shows repeated headers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote

from reactor.errors import LinkError as LinkError  # defined there, exported here too

#: The header of a daemon's WHIP/WHEP 201 that names its ``server.public_url``: where the
#: session's later requests (commands, events, DELETE) go, not to the balancer that placed
#: the offer.
PUBLIC_URL_HEADER = "Reactor-Public-URL"

ICE_SERVER_REL = "ice-server"

# RFC 9110 token characters (attribute names, unquoted values).
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class IceServerLike(Protocol):
    """What :func:`format_ice_links` and :mod:`reactor.media.peer` need of an ICE server,
    as plain values (``reactor.config.IceServer`` has them)."""

    @property
    def url_list(self) -> list[str]: ...

    @property
    def username(self) -> str | None: ...

    @property
    def credential(self) -> str | None: ...


@dataclass(frozen=True)
class LinkedIceServer:
    """One ``rel="ice-server"`` link: a URL and its credentials, if any."""

    url: str
    username: str | None = None
    credential: str | None = None


def _quoted(value: str) -> bool:
    return all(" " <= c <= "~" for c in value)


def _param(name: str, value: str) -> str:
    if _quoted(value):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{name}="{escaped}"'
    return f"{name}*=UTF-8''{quote(value, safe='')}"


def format_ice_links(servers: Iterable[IceServerLike]) -> list[str]:
    """One ``Link`` header value per URL of every server, in order."""
    values: list[str] = []
    for server in servers:
        for url in server.url_list:
            if not url or any(c in url for c in "<> \t\r\n,;\"") or not _quoted(url):
                raise LinkError(f"{url!r} cannot be written between <> in a Link header")
            parts = [f"<{url}>", f'rel="{ICE_SERVER_REL}"']
            if server.username is not None:
                parts.append(_param("username", server.username))
            if server.credential is not None:
                parts.append(_param("credential", server.credential))
                parts.append('credential-type="password"')
            values.append("; ".join(parts))
    return values


class _Reader:
    """A cursor over one header value, following RFC 8288 §3's grammar."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def fail(self, what: str) -> LinkError:
        return LinkError(f"Link header: {what} at character {self.i} of {self.text[:200]!r}")

    def skip_space(self) -> None:
        while self.i < len(self.text) and self.text[self.i] in " \t":
            self.i += 1

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.i += 1

    def token(self) -> str:
        start = self.i
        while self.i < len(self.text) and self.text[self.i] in _TOKEN:
            self.i += 1
        if start == self.i:
            raise self.fail("expected a name or value")
        return self.text[start:self.i]

    def quoted(self) -> str:
        self.expect('"')
        out: list[str] = []
        while self.i < len(self.text):
            c = self.text[self.i]
            self.i += 1
            if c == '"':
                return "".join(out)
            if c == "\\":
                if self.i >= len(self.text):
                    break
                c = self.text[self.i]
                self.i += 1
            out.append(c)
        raise self.fail("unterminated quoted string")

    def uri(self) -> str:
        self.expect("<")
        end = self.text.find(">", self.i)
        if end < 0:
            raise self.fail("'<' without '>'")
        value = self.text[self.i:end]
        self.i = end + 1
        return value


def _ext_value(raw: str, reader: _Reader) -> str:
    charset, sep, rest = raw.partition("'")
    _, sep2, encoded = rest.partition("'")
    if not (sep and sep2) or charset.lower() not in ("utf-8", "iso-8859-1"):
        raise reader.fail(f"expected an RFC 8187 value such as UTF-8''%C3%A9, found {raw!r}")
    encoding = "utf-8" if charset.lower() == "utf-8" else "latin-1"
    try:
        return unquote(encoded, encoding=encoding, errors="strict")
    except UnicodeDecodeError:
        raise reader.fail(f"{raw!r} is not {charset}") from None


def parse_links(values: Iterable[str]) -> list[tuple[str, dict[str, str]]]:
    """Every link in ``values`` (each one ``Link`` header) as ``(uri, params)``.

    Parameter names are lower-cased; an extended ``name*`` value is decoded and stored
    under ``name``, taking precedence over a plain ``name``. The first occurrence of a
    parameter wins (RFC 8288 §3).
    """
    links: list[tuple[str, dict[str, str]]] = []
    for text in values:
        r = _Reader(text)
        while True:
            r.skip_space()
            if not r.peek():
                break
            if r.peek() == ",":  # empty list elements are allowed (RFC 9110 §5.6.1)
                r.i += 1
                continue
            uri = r.uri()
            params: dict[str, str] = {}
            extended: dict[str, str] = {}
            while True:
                r.skip_space()
                if r.peek() != ";":
                    break
                r.i += 1
                r.skip_space()
                name = r.token().lower()
                r.skip_space()
                value = ""
                if r.peek() == "=":
                    r.i += 1
                    r.skip_space()
                    value = r.quoted() if r.peek() == '"' else r.token()
                if name.endswith("*"):
                    extended.setdefault(name[:-1], _ext_value(value, r))
                else:
                    params.setdefault(name, value)
            params.update(extended)
            links.append((uri, params))
            r.skip_space()
            if r.peek() and r.peek() != ",":
                raise r.fail("expected ',' or ';'")
    return links


def parse_ice_servers(values: Iterable[str]) -> list[LinkedIceServer]:
    """The ``rel="ice-server"`` links in ``values``; other links are ignored."""
    servers: list[LinkedIceServer] = []
    for uri, params in parse_links(values):
        if ICE_SERVER_REL not in params.get("rel", "").lower().split():
            continue
        servers.append(LinkedIceServer(uri, params.get("username"), params.get("credential")))
    return servers
