"""GET /metrics and the request counts behind reactor_http_requests_total, on a real
aiohttp app built from the route table (aiohttp's test server on loopback) in front of
a backend that answers the metrics request as the supervisor does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from aiohttp.test_utils import TestClient, TestServer

from reactor.config import ServerSection
from reactor.errors import HttpError
from reactor.proto import control_pb2 as cpb
from reactor.workers.http import Api, EventFeed, build_app

TOKEN = "unit-token-456"
PAGE = b"# HELP reactor_viewers WHEP viewers watching\nreactor_viewers 0.0\n"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Backend:
    async def request(self, req: cpb.Request, timeout: float = 10.0) -> cpb.Reply:
        assert req.WhichOneof("body") == "metrics"
        return cpb.Reply(metrics=cpb.MetricsReply(text=PAGE, content_type=CONTENT_TYPE))

    async def whip_offer(self, sdp: str) -> tuple[str, str]:
        raise HttpError(400, "no")

    async def whip_close(self, resource_id: str, why: str) -> bool:
        return False

    async def whep_offer(self, sdp: str) -> tuple[str, str]:
        raise HttpError(400, "no")

    async def whep_close(self, resource_id: str) -> None:
        raise HttpError(404, f"no WHEP session {resource_id!r}")

    def admit(self, key: str | None, kind: str) -> str | None:
        return None

    def release(self, key: str | None) -> None:
        pass

    def busy(self) -> str | None:
        return None


# A string: aiohttp's TestClient takes type arguments only from 3.11 (the pin admits 3.9).
Check: TypeAlias = "Callable[[TestClient[Any, Any]], Awaitable[None]]"


def run(api: Api, check: Check) -> None:
    async def main() -> None:
        async with TestClient(TestServer(build_app(api), host="127.0.0.1")) as client:
            await check(client)

    asyncio.run(main())


def counts(api: Api) -> dict[tuple[str, str, int], int]:
    return {(c.method, c.route, c.status): c.count for c in api.request_counts()}


def test_metrics_needs_the_token_unless_public() -> None:
    guarded = Api(Backend(), EventFeed(), ServerSection(token=TOKEN))
    public = Api(Backend(), EventFeed(), ServerSection(token=TOKEN), metrics_public=True)

    async def check_guarded(client: TestClient[Any, Any]) -> None:
        assert (await client.get("/metrics")).status == 401
        resp = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 200
        assert resp.headers["Content-Type"] == CONTENT_TYPE
        assert await resp.read() == PAGE

    async def check_public(client: TestClient[Any, Any]) -> None:
        resp = await client.get("/metrics")
        assert resp.status == 200 and await resp.read() == PAGE
        assert (await client.get("/api/status")).status == 401  # only /metrics is opened

    run(guarded, check_guarded)
    run(public, check_public)


def test_requests_count_by_route_template_status_and_known_method() -> None:
    api = Api(Backend(), EventFeed(), ServerSection())

    async def check(client: TestClient[Any, Any]) -> None:
        for _ in range(3):
            assert (await client.get("/metrics")).status == 200
        for rid in ("a1", "b2"):  # two ids, one route
            assert (await client.delete(f"/whep/{rid}")).status == 404
        assert (await client.get("/no/such/path")).status == 404
        for method in ("PROPFIND", "TRACE"):  # other methods share one series
            await client.request(method, "/metrics")

    run(api, check)
    got = counts(api)
    assert got[("GET", "/metrics", 200)] == 3
    assert got[("DELETE", "/whep/{id}", 404)] == 2
    assert got[("GET", "", 404)] == 1
    assert sum(n for (m, _, _), n in got.items() if m == "other") == 2
    assert {m for m, _, _ in got} == {"GET", "DELETE", "other"}
