"""ICE servers in Link headers (RFC 9725 §4.6): formatting, parsing, and the client's OPTIONS."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from reactor.config import IceServer
from reactor.media.links import (
    LinkedIceServer,
    LinkError,
    format_ice_links,
    parse_ice_servers,
    parse_links,
)
from reactor.media.whip_client import ice_servers


def _servers() -> list[IceServer]:
    return [
        IceServer(urls="stun:stun.example.net", username=None, credential=None),
        IceServer(urls=["turn:turn.example.net:3478?transport=udp",
                        "turns:turn.example.net:5349"],
                  username="user", credential="myPassword"),
    ]


def test_one_link_value_per_url_in_the_rfc_shape() -> None:
    assert format_ice_links(_servers()) == [
        '<stun:stun.example.net>; rel="ice-server"',
        '<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; username="user"; '
        'credential="myPassword"; credential-type="password"',
        '<turns:turn.example.net:5349>; rel="ice-server"; username="user"; '
        'credential="myPassword"; credential-type="password"',
    ]


@pytest.mark.parametrize("credential", [
    'a,b;c="d"\\e',          # list and parameter separators, quotes and a backslash
    ", rel=\"ice-server\"",  # what would be a second link if it were not quoted
    "pässwörd ✓",            # not ASCII: sent as an RFC 8187 extended value
    "line\r\nbreak\ttab",   # control characters cannot be quoted either
    "\\",
])
def test_credentials_round_trip(credential: str) -> None:
    servers = [IceServer(urls="turn:198.18.0.1:3478", username="u,s;e\"r",
                         credential=credential)]
    values = format_ice_links(servers)
    for value in values:
        assert "\r" not in value and "\n" not in value and value.isascii()
    expected = [LinkedIceServer("turn:198.18.0.1:3478", 'u,s;e"r', credential)]
    # As separate headers, and as fetch() and proxies show them: joined with ", ".
    assert parse_ice_servers(values) == expected
    assert parse_ice_servers([", ".join(values + format_ice_links(servers))]) == expected * 2


def test_escaped_quote_is_written_with_a_backslash() -> None:
    [value] = format_ice_links([IceServer(urls="turn:t.example:3478", username="a\"b",
                                          credential="c\\d")])
    assert value.endswith('username="a\\"b"; credential="c\\\\d"; credential-type="password"')
    [value] = format_ice_links([IceServer(urls="turn:t.example:3478", username="é",
                                          credential="x")])
    assert "username*=UTF-8''%C3%A9;" in value


def test_parsing_ignores_other_links_and_takes_tokens_and_odd_spacing() -> None:
    header = ('</style.css>; rel=preload, <stun:a.example>;rel=ice-server ,'
              '<turn:b.example>;  REL="ice-server other" ; username=bob ;credential="p w"')
    assert parse_ice_servers([header]) == [
        LinkedIceServer("stun:a.example"),
        LinkedIceServer("turn:b.example", "bob", "p w"),
    ]
    # An extended value wins over a plain one; the first of two plain ones wins.
    assert parse_links(["<x:y>; a=1; a=2; b=\"plain\"; b*=UTF-8''%E2%9C%93"]) == [
        ("x:y", {"a": "1", "b": "✓"})]


@pytest.mark.parametrize("header, where", [
    ('<stun:a.example; rel="ice-server"', "'<' without '>'"),
    ('<stun:a.example>; rel="ice-server', "unterminated quoted string"),
    ('<stun:a.example> rel="ice-server"', "expected ',' or ';'"),
    ('stun:a.example; rel="ice-server"', "expected '<'"),
    ("<turn:a.example>; rel=ice-server; username*=KOI8''%C3", "RFC 8187"),
    ("<turn:a.example>; rel=ice-server; username*=UTF-8''%FF", "is not UTF-8"),
])
def test_malformed_links_say_where(header: str, where: str) -> None:
    with pytest.raises(LinkError) as info:
        parse_ice_servers([header])
    assert str(info.value).startswith("Link header: ") and where in str(info.value)
    assert "at character" in str(info.value)


def test_a_url_that_cannot_sit_between_angle_brackets_is_refused() -> None:
    class Odd:
        url_list = ["stun:a>b"]
        username = None
        credential = None

    with pytest.raises(LinkError, match="'stun:a>b' cannot be written"):
        format_ice_links([Odd()])


def test_client_reads_the_servers_from_an_options_answer() -> None:
    seen: list[str] = []

    async def options(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        resp = web.Response(status=204)
        for value in format_ice_links(_servers()):
            resp.headers.add("Link", value)
        return resp

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=405)

    async def main() -> None:
        app = web.Application()
        app.router.add_route("OPTIONS", "/whep", options)
        app.router.add_route("OPTIONS", "/other", refuse)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            found = await ice_servers(f"http://127.0.0.1:{port}/whep", "secret-token")
            assert [(s.urls, s.username, s.credential, s.credentialType) for s in found] == [
                ("stun:stun.example.net", None, None, "password"),
                ("turn:turn.example.net:3478?transport=udp", "user", "myPassword", "password"),
                ("turns:turn.example.net:5349", "user", "myPassword", "password"),
            ]
            assert seen == ["Bearer secret-token"]
            # A server without OPTIONS support names no servers; the POST decides the rest.
            assert await ice_servers(f"http://127.0.0.1:{port}/other") == []
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_the_web_client_parses_what_the_daemon_writes() -> None:
    """The page's own parser (reactor/web/app.js, run by node) reads the same servers."""
    import json
    import shutil
    import subprocess
    from importlib import resources

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    source = resources.files("reactor.web").joinpath("app.js").read_text()
    start = source.index("  function parseIceLinks(text)")
    end = source.index("\n  }\n", start) + 4
    for credential in ['a,b;c="d"\\e', ', rel="ice-server"', "pässwörd ✓", "a\r\nb\tc", "\\"]:
        servers = [IceServer(urls="turn:198.18.0.1:3478", username='u,s;e"r',
                             credential=credential), *_servers()[:1]]
        joined = ", ".join(format_ice_links(servers))
        call = f"console.log(JSON.stringify(parseIceLinks({json.dumps(joined)})));"
        script = source[start:end] + "\n" + call
        out = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30,
                             check=True).stdout
        assert json.loads(out) == [
            {"urls": "turn:198.18.0.1:3478", "username": 'u,s;e"r', "credential": credential},
            {"urls": "stun:stun.example.net"},
        ]
