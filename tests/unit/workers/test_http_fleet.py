"""The HTTP API of a daemon in a fleet: signed tokens by scope, and server.public_url."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from aiohttp.test_utils import TestClient, TestServer

from reactor.config import ServerSection
from reactor.control.tokens import mint
from reactor.workers.auth import scope_for
from reactor.workers.http import Api, EventFeed, build_app
from tests.unit.workers.test_http import Backend

SECRET = "fleet-secret-" + "x" * 30
STATIC = "static-token-123"
OFFER = "v=0\r\n"
SDP = {"Content-Type": "application/sdp"}

# A string: TestClient is subscriptable from aiohttp 3.11 only (the pin admits 3.9).
Check: TypeAlias = "Callable[[TestClient[Any, Any]], Awaitable[None]]"


def serve(check: Check, **server: Any) -> None:
    section = ServerSection.model_validate(server)

    async def main() -> None:
        app = build_app(Api(Backend(), EventFeed(), section))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await check(client)

    asyncio.run(main())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_routes_map_to_scopes() -> None:
    assert scope_for("/whep") == scope_for("/whep/w1") == scope_for("/api/events") == "watch"
    assert scope_for("/whip") == scope_for("/whip/s1") == "send"
    assert scope_for("/api/commands/set_speed") == "command"
    for path in ("/api/status", "/api/schema", "/metrics", "/api/openapi.json"):
        assert scope_for(path) is None


def test_a_signed_token_opens_what_its_scope_covers_and_no_more() -> None:
    watch = mint(SECRET, ["watch"], 600)

    async def check(client: TestClient[Any, Any]) -> None:
        resp = await client.post("/whep", data=OFFER, headers={**SDP, **bearer(watch)})
        assert resp.status == 201
        resp = await client.get("/api/events", params={"token": watch})
        assert resp.status == 200
        resp.close()
        assert (await client.get("/api/status", headers=bearer(watch))).status == 200
        resp = await client.post("/whip", data=OFFER, headers={**SDP, **bearer(watch)})
        assert resp.status == 403
        assert resp.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope"'
        assert "'send'" in (await resp.json())["error"]
        resp = await client.post("/api/commands/set_speed", json={}, headers=bearer(watch))
        assert resp.status == 403 and "'command'" in (await resp.json())["error"]
        assert resp.headers["Access-Control-Allow-Origin"] == "*"  # readable cross-origin

    serve(check, token_secret=SECRET)


def test_expired_malformed_and_foreign_tokens_are_401_naming_which() -> None:
    expired = mint(SECRET, ["watch"], 10, now=time.time() - 60)
    foreign = mint("another-secret-" + "y" * 30, ["watch"], 600)

    async def check(client: TestClient[Any, Any]) -> None:
        for token, says in ((expired, "expired"), ("x.y.z", "malformed"),
                            (foreign, "signature"), ("not-a-token", "wrong bearer token")):
            resp = await client.get("/api/status", headers=bearer(token))
            assert resp.status == 401, token
            assert says in (await resp.json())["error"]
            assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        resp = await client.get("/api/status")
        assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"

    serve(check, token_secret=SECRET)


def test_the_static_token_keeps_working_beside_a_secret() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        resp = await client.post("/api/commands/set_speed", json={}, headers=bearer(STATIC))
        assert resp.status == 200
        resp = await client.post("/whip", data=OFFER, headers={**SDP, **bearer(STATIC)})
        assert resp.status == 201
        token = mint(SECRET, ["command"], 600)
        resp = await client.post("/api/commands/set_speed", json={}, headers=bearer(token))
        assert resp.status == 200

    serve(check, token=STATIC, token_secret=SECRET)


def test_public_url_makes_location_absolute_and_names_the_daemon() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        for path, rid in (("/whep", "w1"), ("/whip", "s1")):
            resp = await client.post(path, data=OFFER, headers=SDP)
            assert resp.status == 201
            assert resp.headers["Location"] == f"https://gpu-3.lab.example:8443{path}/{rid}"
            assert resp.headers["Reactor-Public-URL"] == "https://gpu-3.lab.example:8443/"
            assert "Reactor-Public-URL" in resp.headers["Access-Control-Expose-Headers"]

    serve(check, public_url="https://gpu-3.lab.example:8443")


def test_public_url_under_a_path_keeps_the_path() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        resp = await client.post("/whep", data=OFFER, headers=SDP)
        assert resp.headers["Location"] == "https://lab.example/gpu-3/whep/w1"

    serve(check, public_url="https://lab.example/gpu-3/")


def test_without_public_url_the_location_stays_relative() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        resp = await client.post("/whep", data=OFFER, headers=SDP)
        assert resp.headers["Location"] == "/whep/w1"
        assert "Reactor-Public-URL" not in resp.headers

    serve(check)
