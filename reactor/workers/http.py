"""The HTTP API of the ingress worker: its handlers and its one route table.

:class:`Api` holds the handlers; each is a method that takes an ``aiohttp`` request and
returns a response, so a test can serve a real app around any :class:`Backend`.
:data:`ROUTES` is the only list of routes: :func:`build_app` registers it with aiohttp
and :func:`openapi_document` turns it into the OpenAPI document
(:mod:`reactor.workers.openapi`), so the two cannot disagree.

Every refusal is a JSON body ``{"error": "...", "field": ...}`` with a status that says
what kind of problem it is (a handler or the backend raises
:class:`~reactor.errors.HttpError`); a handler's unexpected exception is a logged 500,
never a dead process. The bearer token (``server.token``, or a signed token of
``server.token_secret`` whose scope covers the route: :mod:`reactor.workers.auth`) guards
everything but the public routes (``/``, the web client's files, ``/healthz``,
``/readyz``); browsers' ``EventSource`` cannot set headers, so ``/api/events`` also takes
``?token=``.

Events carry an ``id:`` (the event's time stamp); a client that reconnects with
``Last-Event-ID`` (``EventSource`` does this by itself) or ``?since=`` first gets the
recent events it missed, such as the ingress worker's own restart. A body that does not
arrive within ``server.idle_timeout_s`` is a 408.

The WHIP and WHEP ``201`` answers, and an ``OPTIONS`` on ``/whip`` or ``/whep`` (not a
CORS preflight), carry ``server.ice_servers`` as ``Link: <url>; rel="ice-server"``
headers (RFC 9725 §4.6, :mod:`reactor.media.links`). Every URL the daemon makes is
relative, so a reverse proxy may serve it under any scheme, host and port; but with
``server.public_url`` (a daemon of a fleet, behind a balancer) the ``Location`` is absolute
to it and the ``Reactor-Public-URL`` header names it, so that the session's later requests
reach this daemon, not whichever one the balancer picks.

Every WHIP or WHEP offer is let in by the backend's ``admit``
(:mod:`reactor.workers.admission`) with the key the client holds the session with
(:func:`session_key`): with ``session.exclusive`` the first client gets one
(``Reactor-Session-Key`` header and cookie). An offer the daemon cannot take (another
client's session, the WHIP slot taken, draining) gets 503 with ``Retry-After``, so a
balancer tries another daemon; ``/readyz`` is 503 at the same moments.

Long module: about 600 lines, because the route table, the handlers it names and
the middleware they all pass through (token, errors, request counts for ``/metrics``)
are one contract; split, each part would be read only with the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import types
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from aiohttp import web

from reactor.config import AudioSection, ServerSection
from reactor.control.status import readiness, snapshot_to_dict
from reactor.errors import HttpError
from reactor.media.links import PUBLIC_URL_HEADER, format_ice_links
from reactor.proto import control_pb2 as cpb
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb
from reactor.workers.auth import Guard
from reactor.workers.openapi import (
    ANY_JSON,
    ERROR,
    ICE_OPTIONS,
    MODEL_SCHEMA,
    SDP_BODY,
    SDP_CREATED,
    Operation,
    audio_schema,
    build_document,
)

__all__ = ["ROUTES", "Api", "Backend", "EventFeed", "Route", "build_app", "error",
           "openapi_document"]

log = logging.getLogger(__name__)

MAX_JSON_BYTES = 64 * 1024
MAX_SDP_BYTES = 64 * 1024
SSE_KEEPALIVE_S = 15.0
#: How long :meth:`Backend.request` waits for the daemon by default.
REQUEST_TIMEOUT_S = 10.0
#: Recent events kept for clients that reconnect with ``Last-Event-ID``.
BACKLOG_EVENTS = 64
#: Events queued for one SSE client; a slow one loses its oldest, not our memory.
SUBSCRIBER_QUEUE = 256
#: Put in an SSE subscriber's queue when ingress stops: the stream ends.
END_OF_STREAM = ("", "")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Methods counted by name in ``reactor_http_requests_total``; any other is "other", so a
#: client cannot make new series by inventing methods.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})

#: The header and cookie that carry a client's key to an exclusive session.
KEY_HEADER, KEY_COOKIE = "Reactor-Session-Key", "reactor_session"

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS, PATCH",
    "Access-Control-Allow-Headers": f"Authorization, Content-Type, If-Match, {KEY_HEADER}",
    "Access-Control-Expose-Headers":
        f"Location, Link, ETag, {KEY_HEADER}, {PUBLIC_URL_HEADER}",
    "Access-Control-Max-Age": "600",
}


def session_key(request: web.Request) -> str | None:
    """The key a client holds an exclusive session with (``session.exclusive``): the
    ``Reactor-Session-Key`` header, a ``?key=`` query (for stock WHIP/WHEP clients, whose
    URL can carry one), or the cookie a browser was given; ``None`` for a new client."""
    return (request.headers.get(KEY_HEADER) or request.query.get("key")
            or request.cookies.get(KEY_COOKIE) or None)


def with_session_key(resp: web.Response, key: str | None) -> web.Response:
    """Hand the client the key of the exclusive session it holds (header and cookie)."""
    if key is not None:
        resp.headers[KEY_HEADER] = key
        resp.set_cookie(KEY_COOKIE, key, path="/", httponly=True, samesite="Strict")
    return resp


def error(status: int, message: str, field: str | None = None) -> web.Response:
    """The JSON refusal every error response has: ``{"error": ..., "field": ...}``."""
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


class Backend(Protocol):
    """What the handlers need from the ingress worker (:class:`reactor.workers.ingress.
    Ingress`). Each method raises :class:`~reactor.errors.HttpError` to refuse."""

    async def request(self, req: cpb.Request, timeout: float = REQUEST_TIMEOUT_S) -> cpb.Reply:
        """Ask the supervisor; an error reply raises with its status."""
        ...

    async def whip_offer(self, sdp: str) -> tuple[str, str]:
        """Accept a WHIP offer: ``(resource id, answer SDP)``."""
        ...

    async def whip_close(self, resource_id: str, why: str) -> bool:
        """End a WHIP session; ``False`` when there is no such session."""
        ...

    async def whep_offer(self, sdp: str) -> tuple[str, str]:
        """Accept a WHEP offer: ``(resource id, answer SDP)``."""
        ...

    async def whep_close(self, resource_id: str) -> None:
        """End a WHEP session."""
        ...

    def admit(self, key: str | None, kind: str) -> str | None:
        """Let a ``kind`` ("whip" or "whep") offer of the client holding ``key`` (None: a
        new client) in, returning the key it holds the session with (``None`` without
        ``session.exclusive``); raise 503 with ``retry_after_s`` when the daemon cannot
        take it (busy, draining), 409 where another daemon cannot help either."""
        ...

    def busy(self) -> str | None:
        """Why a new client would be refused now (``/readyz``), or ``None``."""
        ...

    def release(self, key: str | None) -> None:
        """``admit`` let a client in whose offer then failed: forget it if no session
        started."""
        ...


class EventFeed:
    """Session events and model messages fanned out to the ``/api/events`` streams, with
    the recent ones kept for clients that reconnect. Used on the event loop only."""

    def __init__(self, backlog: int = BACKLOG_EVENTS) -> None:
        self._subscribers: set[asyncio.Queue[tuple[str, str]]] = set()
        self._backlog: deque[tuple[str, str]] = deque(maxlen=backlog)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event_id: str, text: str) -> None:
        """Send ``text`` (JSON) with SSE id ``event_id`` (a time stamp) to every stream."""
        item = (event_id, text)
        self._backlog.append(item)
        for q in list(self._subscribers):
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()  # a slow SSE client loses its oldest event, not memory
            q.put_nowait(item)

    def since(self, since: float) -> list[tuple[str, str]]:
        """The kept events newer than ``since``, oldest first."""
        return [item for item in list(self._backlog) if float(item[0]) > since]

    def subscribe(self) -> asyncio.Queue[tuple[str, str]]:
        q: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[tuple[str, str]]) -> None:
        self._subscribers.discard(q)

    def end(self) -> None:
        """Tell every stream to finish, so stopping does not wait on open streams."""
        for q in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueEmpty):
                while q.full():
                    q.get_nowait()
            q.put_nowait(END_OF_STREAM)


class Api:
    """The handlers, the token guard and the body readers of one app.

    ``server`` gives the token, the body timeout and the ICE servers; ``audio`` the sound
    in ``/api/schema``; ``backend`` does the work; ``events`` feeds ``/api/events``.
    ``metrics_public`` (``metrics.public``) serves ``/metrics`` without the token. Every
    request is counted by method, route and status (:meth:`request_counts`).
    """

    def __init__(self, backend: Backend, events: EventFeed, server: ServerSection,
                 audio: AudioSection | None = None, *, metrics_public: bool = False,
                 exclusive: bool = False) -> None:
        self.backend = backend
        self.exclusive = exclusive  # session.exclusive, for /readyz's busy
        self.max_viewers = server.max_viewers  # a daemon full of viewers is busy too
        self.public = PUBLIC | {"/metrics"} if metrics_public else PUBLIC
        # (method, route template, status): written on the event loop, copied (one C call,
        # atomic under the GIL) by the heartbeat thread.
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.events = events
        self.token = server.token
        self.auth = Guard(server.token, server.token_secret)
        self.public_url = server.public_url
        self.body_timeout = server.idle_timeout_s
        self.ice_links = format_ice_links(server.ice_servers)
        self.audio = audio_schema(audio or AudioSection())

    # --- middleware -------------------------------------------------------------------

    @web.middleware
    async def count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count every answer by method, route (the path template, so ids make no new
        series) and status; the heartbeat reports them for ``reactor_http_requests_total``."""
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else ""
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            method = request.method if request.method in METHODS else "other"
            self.requests[(method, route, status)] += 1

    def request_counts(self) -> list[wpb.HttpCount]:
        """Requests answered since this process started (for the heartbeat)."""
        return [wpb.HttpCount(method=m, route=r, status=st, count=n)
                for (m, r, st), n in self.requests.copy().items()]

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """CORS, the bearer token, and every error as a JSON body."""
        preflight = "Access-Control-Request-Method" in request.headers
        if request.method == "OPTIONS" and (preflight or request.path not in ICE_PATHS):
            # A CORS preflight carries no token, so it never gets the ICE servers' credentials.
            return web.Response(status=204, headers=CORS_HEADERS)
        if self.auth.enabled and request.path not in self.public:
            refused = self.auth.refusal(request)
            if refused is not None:
                resp: web.StreamResponse = error(refused.status, refused.message)
                # RFC 6750 §3: a request without a token gets the bare challenge.
                resp.headers["WWW-Authenticate"] = (
                    "Bearer" if refused.error == "invalid_request"
                    else f'Bearer error="{refused.error}"')
                resp.headers.update(CORS_HEADERS)
                return resp
        try:
            resp = await handler(request)
        except HttpError as exc:
            resp = error(exc.status, exc.message, exc.field)
            if exc.retry_after_s is not None:
                resp.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
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

    # --- bodies -----------------------------------------------------------------------

    async def read_body(self, request: web.Request, limit: int, what: str) -> bytes:
        """The whole body, or ``limit + 1`` bytes of it (the caller says 413); a 408 when
        it does not arrive within ``server.idle_timeout_s``."""
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
            await asyncio.wait_for(drain(), self.body_timeout)
            return b"".join(chunks)
        except TimeoutError:
            raise HttpError(408, f"the {what} did not arrive within {self.body_timeout:g} s "
                            "(server.idle_timeout_s)") from None

    async def read_json(self, request: web.Request) -> Any:
        if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
            raise HttpError(413, f"request body over {MAX_JSON_BYTES} bytes")
        raw = await self.read_body(request, MAX_JSON_BYTES, "request body")
        if len(raw) > MAX_JSON_BYTES:
            raise HttpError(413, f"request body over {MAX_JSON_BYTES} bytes")
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise HttpError(400, f"request body is not valid JSON: {exc}") from None

    async def read_sdp(self, request: web.Request) -> str:
        ctype = request.content_type
        if ctype != "application/sdp":
            raise HttpError(415, f"Content-Type must be application/sdp, found {ctype!r}")
        if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
            raise HttpError(413, f"SDP offer over {MAX_SDP_BYTES} bytes")
        raw = await self.read_body(request, MAX_SDP_BYTES, "SDP offer")
        if len(raw) > MAX_SDP_BYTES:
            raise HttpError(413, f"SDP offer over {MAX_SDP_BYTES} bytes")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(400, "SDP offer is not UTF-8 text") from None

    def with_ice_links(self, resp: web.Response) -> web.Response:
        for value in self.ice_links:
            resp.headers.add("Link", value)
        return resp

    def sdp_created(self, location: str, sdp: str) -> web.Response:
        # Location is relative (RFC 9725 allows it), so it stays right behind a proxy that
        # serves us under another scheme, host or port; with server.public_url it is
        # absolute to this daemon (WHIP: "MUST be a final one"), so a balancer that placed
        # the offer is not asked again, and Reactor-Public-URL tells the client where the
        # session's commands and events are.
        headers = {"Location": location, "ETag": f'"{location}"'}
        if self.public_url is not None:
            headers["Location"] = self.public_url + location.lstrip("/")
            headers[PUBLIC_URL_HEADER] = self.public_url
        return self.with_ice_links(web.Response(
            status=201, text=sdp, content_type="application/sdp", headers=headers))

    # --- handlers ---------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        name = request.path.lstrip("/") or "index.html"
        try:
            data = resources.files("reactor.web").joinpath(name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise web.HTTPNotFound() from None
        ctype = {"html": "text/html", "js": "text/javascript", "css": "text/css"}[
            name.rsplit(".", 1)[-1]]
        return web.Response(body=data, content_type=ctype, charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def healthz(self, request: web.Request) -> web.Response:
        try:
            reply = await self.backend.request(cpb.Request(status=cpb.StatusRequest()),
                                               timeout=3.0)
        except HttpError as exc:
            return web.json_response({"ok": False, "error": exc.message}, status=503)
        down = [w.name for w in reply.status.workers if w.state != tpb.WORKER_STATE_RUNNING]
        if down:
            return web.json_response({"ok": False, "down": down}, status=503)
        return web.json_response({"ok": True})

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            reply = await self.backend.request(cpb.Request(status=cpb.StatusRequest()),
                                               timeout=3.0)
        except HttpError as exc:
            return web.json_response({"ready": False, "reason": exc.message}, status=503)
        # The daemon's view (workers, draining, the session), then ingress's own (an
        # exclusive session claimed by an offer and not started yet): the same state that
        # admits offers, so /readyz and a refused offer agree.
        reason = (readiness(reply.status, exclusive=self.exclusive,
                            max_viewers=self.max_viewers) or self.backend.busy())
        if reason is not None:
            return web.json_response({"ready": False, "reason": reason}, status=503)
        return web.json_response({"ready": True})

    async def model_schema(self) -> dict[str, Any]:  # the model's, with the audio object
        reply = await self.backend.request(cpb.Request(schema=cpb.SchemaRequest()))
        return {**json.loads(reply.schema.schema_json), "audio": self.audio}

    async def schema(self, request: web.Request) -> web.Response:
        return web.json_response(await self.model_schema())

    async def status(self, request: web.Request) -> web.Response:
        reply = await self.backend.request(cpb.Request(status=cpb.StatusRequest()))
        return web.json_response(snapshot_to_dict(reply.status))

    async def metrics(self, request: web.Request) -> web.Response:
        reply = await self.backend.request(cpb.Request(metrics=cpb.MetricsRequest()))
        return web.Response(body=reply.metrics.text,
                            headers={"Content-Type": reply.metrics.content_type})

    async def openapi(self, request: web.Request) -> web.Response:
        try:
            model_schema = await self.model_schema()
        except HttpError:
            model_schema = {"commands": [], "audio": self.audio}
        return web.json_response(openapi_document(model_schema))

    async def events_stream(self, request: web.Request) -> web.StreamResponse:
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
                raise HttpError(400, f"Last-Event-ID or since must be an event id (a "
                                f"time stamp), found {since_text[:40]!r}") from None
        await resp.prepare(request)
        q = self.events.subscribe()
        try:
            await resp.write(b": connected\n\n")
            if since is not None:
                for event_id, text in self.events.since(since):
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
            self.events.unsubscribe(q)
        return resp

    async def command(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        args = await self.read_json(request)
        if not isinstance(args, dict):
            raise HttpError(422, f"{name}: arguments must be a JSON object, "
                            f"found {type(args).__name__}")
        try:
            args_json = json.dumps(args)
        except (ValueError, RecursionError) as exc:
            raise HttpError(400, f"{name}: arguments cannot be used: {exc}") from None
        req = cpb.Request(command=cpb.CommandRequest(name=name, args_json=args_json))
        reply = await self.backend.request(req)
        result = json.loads(reply.command.result_json or "null")
        return web.json_response({"ok": True, "command": name, "result": result})

    async def ice_options(self, request: web.Request) -> web.Response:
        # RFC 9725 §4.6: a client that must configure its peer connection before it makes
        # the offer (a browser without setConfiguration, aiortc) asks for the ICE servers
        # first with OPTIONS, sending its token like the POST it is about to make.
        return self.with_ice_links(web.Response(status=204, headers={
            "Allow": "OPTIONS, POST", "Accept-Post": "application/sdp"}))

    async def whip(self, request: web.Request) -> web.Response:
        sdp = await self.read_sdp(request)
        key = self.backend.admit(session_key(request), "whip")
        try:
            rid, answer = await self.backend.whip_offer(sdp)
        except BaseException:
            self.backend.release(key)
            raise
        return with_session_key(self.sdp_created(f"/whip/{rid}", answer), key)

    async def whip_delete(self, request: web.Request) -> web.Response:
        rid = request.match_info["id"]
        if not await self.backend.whip_close(rid, "the client left (DELETE)"):
            raise HttpError(404, f"no WHIP session {rid!r}")
        return web.Response(status=200)

    async def whep(self, request: web.Request) -> web.Response:
        sdp = await self.read_sdp(request)
        key = self.backend.admit(session_key(request), "whep")
        try:
            rid, answer = await self.backend.whep_offer(sdp)
        except BaseException:
            self.backend.release(key)
            raise
        return with_session_key(self.sdp_created(f"/whep/{rid}", answer), key)

    async def whep_delete(self, request: web.Request) -> web.Response:
        await self.backend.whep_close(request.match_info["id"])
        return web.Response(status=200)

    async def trickle(self, request: web.Request) -> web.Response:
        # Our answers carry every candidate; trickled client candidates are not needed.
        return error(405, "trickle ICE is not supported: send a complete offer")


# --- the route table ------------------------------------------------------------------

ApiHandler = Callable[[Api, web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One route: registered with aiohttp by :func:`build_app`; documented when it has a
    ``doc``. A ``public`` route needs no token."""

    method: str
    path: str
    handler: ApiHandler
    doc: Operation | None = None
    public: bool = False


def _ice_servers_op(what: str) -> Operation:
    return Operation(f"{what}: the ICE servers (Link headers) before an offer; a CORS "
                     "preflight gets none", {"204": ICE_OPTIONS, "401": ERROR})


#: Every route, in the order the OpenAPI document lists them.
ROUTES: tuple[Route, ...] = (
    Route("GET", "/", Api.index, Operation(
        "the web client", {"200": {"description": "HTML page", "content": {"text/html": {}}}}),
        public=True),
    Route("GET", "/index.html", Api.index, public=True),
    Route("GET", "/app.js", Api.index, public=True),
    Route("GET", "/style.css", Api.index, public=True),
    Route("GET", "/healthz", Api.healthz, Operation(
        "200 when every worker is up",
        {"200": {"description": "healthy", **ANY_JSON},
         "503": {"description": "a worker is down", **ANY_JSON}}), public=True),
    Route("GET", "/readyz", Api.readyz, Operation(
        "200 when the model is loaded and a new session can start; 503 and the reason "
        "(loading, restarting, failed, stopping, draining, or busy: an exclusive session "
        "or server.max_viewers viewers)",
        {"200": {"description": "ready", **ANY_JSON},
         "503": {"description": "not ready: the reason", **ANY_JSON}}), public=True),
    Route("GET", "/api/schema", Api.schema, Operation(
        "the model's name, video, audio and commands",
        {"200": MODEL_SCHEMA, "401": ERROR, "503": ERROR})),
    Route("GET", "/api/status", Api.status, Operation(
        "the daemon status object",
        {"200": {"description": "status", **ANY_JSON}, "401": ERROR, "504": ERROR})),
    Route("GET", "/metrics", Api.metrics, Operation(
        "the daemon's metrics in the Prometheus text format (without the token when "
        "metrics.public is true)",
        {"200": {"description": "Prometheus text format 0.0.4",
                 "content": {"text/plain": {"schema": {"type": "string"}}}},
         "401": ERROR, "504": ERROR})),
    Route("GET", "/api/openapi.json", Api.openapi, Operation(
        "this document", {"200": {"description": "OpenAPI", **ANY_JSON}, "401": ERROR})),
    Route("GET", "/api/events", Api.events_stream, Operation(
        "server-sent session events and model messages",
        {"200": {"description": "event stream", "content": {"text/event-stream": {}}},
         "401": ERROR},
        parameters=({"name": "token", "in": "query", "required": False,
                     "schema": {"type": "string"}},))),
    Route("POST", "/whip", Api.whip, Operation(
        "WHIP: send video, and sound when the model listens (RFC 9725); 503 with "
        "Retry-After when busy or draining (try another daemon), 409 when the WHIP slot is "
        "held by another client of the caller's own exclusive session",
        {"201": SDP_CREATED, "400": ERROR, "401": ERROR, "409": ERROR, "413": ERROR,
         "415": ERROR, "503": ERROR}, request_body=SDP_BODY)),
    Route("OPTIONS", "/whip", Api.ice_options, _ice_servers_op("WHIP")),
    Route("DELETE", "/whip/{id}", Api.whip_delete, Operation(
        "WHIP: stop sending", {"200": {"description": "ended"}, "401": ERROR, "404": ERROR})),
    Route("PATCH", "/whip/{id}", Api.trickle),
    Route("POST", "/whep", Api.whep, Operation(
        "WHEP: watch, and hear when the model speaks; 503 with Retry-After when busy "
        "(another client's exclusive session, server.max_viewers) or draining",
        {"201": SDP_CREATED, "400": ERROR, "401": ERROR, "413": ERROR, "415": ERROR,
         "503": ERROR}, request_body=SDP_BODY)),
    Route("OPTIONS", "/whep", Api.ice_options, _ice_servers_op("WHEP")),
    Route("DELETE", "/whep/{id}", Api.whep_delete, Operation(
        "WHEP: stop watching", {"200": {"description": "ended"}, "401": ERROR, "404": ERROR})),
    Route("PATCH", "/whep/{id}", Api.trickle),
    Route("POST", "/api/commands/{name}", Api.command, Operation(
        "a model command",
        {"200": {"description": "applied; the handler's result", **ANY_JSON},
         "400": ERROR, "401": ERROR, "404": ERROR, "413": ERROR, "422": ERROR,
         "503": ERROR, "504": ERROR}, per_command=True)),
)

#: Paths served without the token.
PUBLIC = frozenset(r.path for r in ROUTES if r.public)
#: Where OPTIONS (not a CORS preflight) answers with the ICE servers, token checked.
ICE_PATHS = frozenset(r.path for r in ROUTES if r.method == "OPTIONS")


def openapi_document(model_schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of :data:`ROUTES`, for a model whose ``/api/schema`` is
    ``model_schema`` (its commands become operations)."""
    return build_document(ROUTES, model_schema)


def build_app(api: Api) -> web.Application:
    """An aiohttp application serving :data:`ROUTES` with ``api``'s handlers."""
    app = web.Application(middlewares=[api.count, api.guard],
                          client_max_size=MAX_JSON_BYTES + MAX_SDP_BYTES,
                          handler_args={"max_field_size": 8190, "max_line_size": 8190})
    for route in ROUTES:
        handler = types.MethodType(route.handler, api)
        if route.method == "GET":
            app.router.add_get(route.path, handler)  # HEAD as well, as aiohttp does
        else:
            app.router.add_route(route.method, route.path, handler)
    return app
