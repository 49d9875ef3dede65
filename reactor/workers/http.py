"""The HTTP routes of the ingress worker (DESIGN.md, "HTTP").

Every refusal is a JSON body ``{"error": "...", "field": ...}`` with a status that says
what kind of problem it is; a handler's unexpected exception is a logged 500, never a dead
process. The bearer token (``server.token``) guards everything but ``/`` and
``/healthz``, compared in constant time; browsers' ``EventSource`` cannot set headers, so
``/api/events`` also takes ``?token=``.

Events carry an ``id:`` (the event's time stamp); a client that reconnects with
``Last-Event-ID`` (``EventSource`` does this by itself) or ``?since=`` first gets the
recent events it missed, such as the ingress worker's own restart. A body that does not
arrive within ``server.idle_timeout_s`` is a 408.

The WHIP and WHEP ``201`` answers, and an ``OPTIONS`` on ``/whip`` or ``/whep`` (not a
CORS preflight), carry ``server.ice_servers`` as ``Link: <url>; rel="ice-server"``
headers (RFC 9725 §4.6, :mod:`reactor.media.links`). Every URL the daemon makes is
relative, so a reverse proxy may serve it under any scheme, host and port.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from reactor.media.links import format_ice_links
from reactor.proto import control_pb2 as cpb

if TYPE_CHECKING:
    from reactor.workers.ingress import Ingress

log = logging.getLogger(__name__)

MAX_JSON_BYTES = 64 * 1024
MAX_SDP_BYTES = 64 * 1024
SSE_KEEPALIVE_S = 15.0
PUBLIC = {"/", "/healthz", "/index.html", "/app.js", "/style.css"}
ICE_PATHS = {"/whip", "/whep"}  # OPTIONS here answers with the ICE servers (token checked)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS, PATCH",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag",
    "Access-Control-Max-Age": "600",
}


def error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


def build_app(ingress: Ingress) -> web.Application:
    from reactor.workers.ingress import RequestFailed

    token = ingress.config.server.token
    body_timeout = ingress.config.server.idle_timeout_s
    ice_links = format_ice_links(ingress.config.server.ice_servers)

    async def read_body(request: web.Request, limit: int, what: str) -> bytes:
        """The whole body, or ``limit + 1`` bytes of it (the caller says 413)."""
        chunks: list[bytes] = []
        size = 0

        async def drain() -> None:
            nonlocal size
            # read(n) returns what has arrived so far, not n bytes: read until the end.
            while size <= limit:
                chunk = await request.content.read(limit + 1 - size)
                if not chunk:
                    return
                chunks.append(chunk)
                size += len(chunk)

        try:
            await asyncio.wait_for(drain(), body_timeout)
            return b"".join(chunks)
        except TimeoutError:
            raise RequestFailed(408, f"the {what} did not arrive within {body_timeout:g} s "
                                "(server.idle_timeout_s)") from None

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        preflight = "Access-Control-Request-Method" in request.headers
        if request.method == "OPTIONS" and (preflight or request.path not in ICE_PATHS):
            # A CORS preflight carries no token, so it never gets the ICE servers' credentials.
            return web.Response(status=204, headers=CORS_HEADERS)
        if token and request.path not in PUBLIC:
            given = request.headers.get("Authorization", "")
            if not given and request.path == "/api/events":
                given = "Bearer " + request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                resp: web.StreamResponse = error(
                    401, "missing or wrong bearer token (send 'Authorization: Bearer <token>')")
                resp.headers["WWW-Authenticate"] = "Bearer"
                resp.headers.update(CORS_HEADERS)
                return resp
        try:
            resp = await handler(request)
        except RequestFailed as exc:
            resp = error(exc.status, exc.message, exc.field or None)
        except web.HTTPException as exc:
            if exc.status >= 400 and exc.content_type != "application/json":
                resp = error(exc.status, exc.reason)
                if "Allow" in exc.headers:  # a 405 says which methods would do
                    resp.headers["Allow"] = exc.headers["Allow"]
            else:
                raise
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            resp = error(500, "internal error; see `reactor daemon logs ingress`")
        if not resp.prepared:
            resp.headers.update(CORS_HEADERS)
            if resp.status == 503:  # a worker is (re)starting: worth another try soon
                resp.headers.setdefault("Retry-After", "1")
        return resp

    async def read_json(request: web.Request) -> Any:
        if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
            raise RequestFailed(413, f"request body over {MAX_JSON_BYTES} bytes")
        raw = await read_body(request, MAX_JSON_BYTES, "request body")
        if len(raw) > MAX_JSON_BYTES:
            raise RequestFailed(413, f"request body over {MAX_JSON_BYTES} bytes")
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise RequestFailed(400, f"request body is not valid JSON: {exc}") from None

    async def read_sdp(request: web.Request) -> str:
        ctype = request.content_type
        if ctype != "application/sdp":
            raise RequestFailed(415, f"Content-Type must be application/sdp, found {ctype!r}")
        if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
            raise RequestFailed(413, f"SDP offer over {MAX_SDP_BYTES} bytes")
        raw = await read_body(request, MAX_SDP_BYTES, "SDP offer")
        if len(raw) > MAX_SDP_BYTES:
            raise RequestFailed(413, f"SDP offer over {MAX_SDP_BYTES} bytes")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestFailed(400, "SDP offer is not UTF-8 text") from None

    def with_ice_links(resp: web.Response) -> web.Response:
        for value in ice_links:
            resp.headers.add("Link", value)
        return resp

    def sdp_created(location: str, sdp: str) -> web.Response:
        # Location is relative (RFC 9725 allows it), so it stays right behind a proxy that
        # serves us under another scheme, host or port.
        return with_ice_links(web.Response(
            status=201, text=sdp, content_type="application/sdp",
            headers={"Location": location, "ETag": f'"{location}"'}))

    async def ice_options(request: web.Request) -> web.Response:
        # RFC 9725 §4.6: a client that must configure its peer connection before it makes
        # the offer (a browser without setConfiguration, aiortc) asks for the ICE servers
        # first with OPTIONS, sending its token like the POST it is about to make.
        return with_ice_links(web.Response(status=204, headers={
            "Allow": "OPTIONS, POST", "Accept-Post": "application/sdp"}))

    async def index(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        try:
            data = resources.files("reactor.web").joinpath(name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise web.HTTPNotFound() from None
        ctype = {"html": "text/html", "js": "text/javascript", "css": "text/css"}[
            name.rsplit(".", 1)[-1]]
        return web.Response(body=data, content_type=ctype, charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def schema(request: web.Request) -> web.Response:
        reply = await ingress.request(cpb.Request(schema=cpb.SchemaRequest()))
        return web.Response(text=reply.schema.schema_json, content_type="application/json")

    async def status(request: web.Request) -> web.Response:
        from reactor.control.status import snapshot_to_dict

        reply = await ingress.request(cpb.Request(status=cpb.StatusRequest()))
        return web.json_response(snapshot_to_dict(reply.status))

    async def healthz(request: web.Request) -> web.Response:
        try:
            reply = await ingress.request(cpb.Request(status=cpb.StatusRequest()), timeout=3.0)
        except RequestFailed as exc:
            return web.json_response({"ok": False, "error": exc.message}, status=503)
        down = [w.name for w in reply.status.workers if w.state != "running"]
        if down:
            return web.json_response({"ok": False, "down": down}, status=503)
        return web.json_response({"ok": True})

    async def command(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        args = await read_json(request)
        if not isinstance(args, dict):
            raise RequestFailed(422, f"{name}: arguments must be a JSON object, "
                                f"found {type(args).__name__}")
        try:
            args_json = json.dumps(args)
        except (ValueError, RecursionError) as exc:
            raise RequestFailed(400, f"{name}: arguments cannot be used: {exc}") from None
        req = cpb.Request(command=cpb.CommandRequest(name=name, args_json=args_json))
        reply = await ingress.request(req)
        result = json.loads(reply.command.result_json or "null")
        return web.json_response({"ok": True, "command": name, "result": result})

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no", **CORS_HEADERS,
        })
        since_text = request.headers.get("Last-Event-ID") or request.query.get("since")
        since: float | None = None
        if since_text:
            try:
                since = float(since_text)
            except ValueError:
                raise RequestFailed(400, f"Last-Event-ID or since must be an event id (a "
                                    f"time stamp), found {since_text[:40]!r}") from None
        await resp.prepare(request)
        q: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=256)
        ingress.subscribers.add(q)
        try:
            await resp.write(b": connected\n\n")
            if since is not None:
                for event_id, text in list(ingress.backlog):
                    if float(event_id) > since:
                        await resp.write(f"id: {event_id}\ndata: {text}\n\n".encode())
            while True:
                try:
                    event_id, text = await asyncio.wait_for(q.get(), SSE_KEEPALIVE_S)
                except TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                if not event_id:  # ingress is stopping
                    break
                await resp.write(f"id: {event_id}\ndata: {text}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            ingress.subscribers.discard(q)
        return resp

    async def whip(request: web.Request) -> web.Response:
        rid, answer = await ingress.whip_offer(await read_sdp(request))
        return sdp_created(f"/whip/{rid}", answer)

    async def whip_delete(request: web.Request) -> web.Response:
        if not await ingress.whip_close(request.match_info["id"], "the client left (DELETE)"):
            raise RequestFailed(404, f"no WHIP session {request.match_info['id']!r}")
        return web.Response(status=200)

    async def whep(request: web.Request) -> web.Response:
        rid, answer = await ingress.whep_offer(await read_sdp(request))
        return sdp_created(f"/whep/{rid}", answer)

    async def whep_delete(request: web.Request) -> web.Response:
        await ingress.whep_close(request.match_info["id"])
        return web.Response(status=200)

    async def trickle(request: web.Request) -> web.Response:
        # Our answers carry every candidate; trickled client candidates are not needed.
        return error(405, "trickle ICE is not supported: send a complete offer")

    async def openapi(request: web.Request) -> web.Response:
        from reactor.workers.openapi import openapi_document

        try:
            reply = await ingress.request(cpb.Request(schema=cpb.SchemaRequest()))
            model_schema = json.loads(reply.schema.schema_json)
        except RequestFailed:
            model_schema = {"commands": []}
        return web.json_response(openapi_document(model_schema))

    app = web.Application(middlewares=[guard], client_max_size=MAX_JSON_BYTES + MAX_SDP_BYTES,
                          handler_args={"max_field_size": 8190, "max_line_size": 8190})
    app.router.add_get("/", index)
    app.router.add_get("/{name:(index\\.html|app\\.js|style\\.css)}", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/schema", schema)
    app.router.add_get("/api/status", status)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_get("/api/events", events)
    app.router.add_post("/api/commands/{name}", command)
    app.router.add_post("/whip", whip)
    app.router.add_route("OPTIONS", "/whip", ice_options)
    app.router.add_delete("/whip/{id}", whip_delete)
    app.router.add_patch("/whip/{id}", trickle)
    app.router.add_post("/whep", whep)
    app.router.add_route("OPTIONS", "/whep", ice_options)
    app.router.add_delete("/whep/{id}", whep_delete)
    app.router.add_patch("/whep/{id}", trickle)
    return app
