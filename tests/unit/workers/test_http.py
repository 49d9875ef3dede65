"""The HTTP handlers on their own: a real aiohttp app built from the route table, served on
loopback by aiohttp's test server, in front of an in-memory backend that answers as the
daemon would. No daemon, no worker processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import pytest
from aiohttp.test_utils import TestClient, TestServer

from reactor.config import AudioSection, IceServer, ServerSection
from reactor.errors import HttpError, ReactorError
from reactor.examples.pattern import TestPattern
from reactor.proto import control_pb2 as cpb
from reactor.proto import telemetry_pb2 as tpb
from reactor.workers.admission import Admission, Held
from reactor.workers.http import (
    ROUTES,
    Api,
    EventFeed,
    build_app,
    openapi_document,
)

TOKEN = "unit-token-123"
MODEL_SCHEMA = TestPattern.schema(320, 240, 30)
#: What /api/schema answers for it with the default config: no sound either way.
SILENT = {"output": False, "input": False, "sample_rate": 48000, "channels": 1}


class Backend:
    """Answers like the daemon: canned replies per request kind, recorded requests, and
    the WHIP/WHEP bookkeeping of one sender."""

    def __init__(self) -> None:
        self.requests: list[cpb.Request] = []
        self.fail: HttpError | Exception | None = None
        self.workers = {"ingress": "running", "inference": "running", "egress": "running"}
        self.sender: str | None = None
        self.closed_whep: list[str] = []
        self.admission = Admission(exclusive=False)  # the real rule, as Ingress uses it
        self.session: str | None = None  # what the snapshot says runs

    async def request(self, req: cpb.Request, timeout: float = 10.0) -> cpb.Reply:
        self.requests.append(req)
        if self.fail is not None:
            raise self.fail
        kind = req.WhichOneof("body")
        if kind == "schema":
            return cpb.Reply(schema=cpb.SchemaReply(schema_json=json.dumps(MODEL_SCHEMA)))
        if kind == "status":
            snap = tpb.Snapshot(state=tpb.DAEMON_STATE_RUNNING, pid=1234)
            for name, state in self.workers.items():
                snap.workers.add(name=name, state=f"WORKER_STATE_{state.upper()}")
            if self.session is not None:
                snap.session.id = self.session
            return cpb.Reply(status=snap)
        if kind == "command":
            args = json.loads(req.command.args_json)
            return cpb.Reply(command=cpb.CommandReply(result_json=json.dumps({"echo": args})))
        raise AssertionError(f"unexpected request {kind}")

    async def whip_offer(self, sdp: str) -> tuple[str, str]:
        if self.sender is not None:
            raise HttpError(409, "another client is already sending video (WHIP)")
        self.sender = "s1"
        return "s1", "v=0\r\nanswer-to:" + sdp

    async def whip_close(self, resource_id: str, why: str) -> bool:
        if resource_id != self.sender:
            return False
        self.sender = None
        return True

    async def whep_offer(self, sdp: str) -> tuple[str, str]:
        return "w1", "v=0\r\nwatch-answer"

    async def whep_close(self, resource_id: str) -> None:
        self.closed_whep.append(resource_id)

    def admit(self, key: str | None, kind: str) -> str | None:  # as Ingress.admit
        held = (Held("another client is already sending video (WHIP)")
                if kind == "whip" and self.sender is not None else None)
        return self.admission.admit(key, whip_held=held)

    def release(self, key: str | None) -> None:
        self.admission.release(key)

    def busy(self) -> str | None:
        return self.admission.busy()


# A string: aiohttp's TestClient takes type arguments only from 3.11 (the pin admits 3.9).
Check: TypeAlias = "Callable[[TestClient[Any, Any], Backend, EventFeed], Awaitable[None]]"


def serve(check: Check, *, token: str | None = None, idle_timeout_s: float = 10.0,
          ice_servers: list[IceServer] | None = None,
          audio: AudioSection | None = None, exclusive: bool = False) -> Backend:
    """Run ``check`` against a real app on loopback; return the backend it talked to."""
    server = ServerSection.model_validate({"token": token, "idle_timeout_s": idle_timeout_s,
                                          "ice_servers": ice_servers or []})
    backend = Backend()
    backend.admission = Admission(exclusive=exclusive)
    events = EventFeed()

    async def main() -> None:
        app = build_app(Api(backend, events, server, audio, exclusive=exclusive))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await check(client, backend, events)

    asyncio.run(main())
    return backend


def test_http_error_is_a_reactor_error() -> None:
    exc = HttpError(409, "busy", "sdp")
    assert isinstance(exc, ReactorError)
    assert (exc.status, exc.message, exc.field, str(exc)) == (409, "busy", "sdp", "busy")


def test_command_forwards_the_arguments_and_returns_the_result() -> None:
    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        resp = await client.post("/api/commands/set_speed", json={"speed": 8})
        assert resp.status == 200
        assert await resp.json() == {"ok": True, "command": "set_speed",
                                     "result": {"echo": {"speed": 8}}}
        assert resp.headers["Access-Control-Allow-Origin"] == "*"

    backend = serve(check)
    (req,) = backend.requests
    assert req.command.name == "set_speed"
    assert json.loads(req.command.args_json) == {"speed": 8}


def test_command_refusals_are_json_with_their_status() -> None:
    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        resp = await client.post("/api/commands/set_speed", data=b"[1, 2]")
        assert resp.status == 422
        assert await resp.json() == {
            "error": "set_speed: arguments must be a JSON object, found list"}
        resp = await client.post("/api/commands/set_speed", data=b"{nope")
        assert resp.status == 400
        assert (await resp.json())["error"].startswith("request body is not valid JSON")
        resp = await client.post("/api/commands/set_speed", data=b"x" * (64 * 1024 + 1))
        assert resp.status == 413
        assert await resp.json() == {"error": "request body over 65536 bytes"}
        # The backend's refusal (here: the model's validation) keeps its status and field.
        backend.fail = HttpError(422, "speed: must be at most 100", "speed")
        resp = await client.post("/api/commands/set_speed", json={"speed": 1000})
        assert resp.status == 422
        assert await resp.json() == {"error": "speed: must be at most 100", "field": "speed"}
        backend.fail = HttpError(503, "inference is restarting")
        resp = await client.post("/api/commands/set_speed", json={})
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"

    serve(check)


def test_an_unexpected_exception_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        backend.fail = RuntimeError("boom")
        resp = await client.get("/api/schema")
        assert resp.status == 500
        assert await resp.json() == {"error": "internal error; see `reactor daemon logs ingress`"}

    serve(check)
    assert "GET /api/schema failed" in caplog.text and "RuntimeError: boom" in caplog.text


def test_body_that_does_not_arrive_is_a_408() -> None:
    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        async def dribble() -> Any:
            yield b'{"speed":'
            await asyncio.sleep(1.0)
            yield b" 8}"

        resp = await client.post("/api/commands/set_speed", data=dribble())
        assert resp.status == 408
        assert await resp.json() == {
            "error": "the request body did not arrive within 0.2 s (server.idle_timeout_s)"}

    serve(check, idle_timeout_s=0.2)


def test_token_guards_all_but_the_public_routes() -> None:
    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        for path in ("/api/schema", "/api/status", "/api/openapi.json", "/api/events"):
            resp = await client.get(path)
            assert resp.status == 401, path
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            assert "bearer token" in (await resp.json())["error"]
        resp = await client.get("/api/schema", headers={"Authorization": "Bearer wrong"})
        assert resp.status == 401
        for path in ("/", "/index.html", "/app.js", "/style.css", "/healthz"):
            resp = await client.get(path)
            assert resp.status == 200, path
        resp = await client.get("/api/schema", headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 200
        assert await resp.json() == {**MODEL_SCHEMA, "audio": SILENT}
        # EventSource cannot send headers: the event stream also takes ?token=.
        resp = await client.get("/api/events", params={"token": TOKEN})
        assert resp.status == 200
        assert await resp.content.readline() == b": connected\n"
        resp.close()

    serve(check, token=TOKEN)


def test_index_serves_the_web_client_files() -> None:
    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        for path, ctype in (("/", "text/html"), ("/index.html", "text/html"),
                            ("/app.js", "text/javascript"), ("/style.css", "text/css")):
            resp = await client.get(path)
            assert resp.status == 200, path
            assert resp.content_type == ctype
            assert resp.headers["Cache-Control"] == "no-cache"
        resp = await client.get("/other.js")
        assert resp.status == 404
        assert (await resp.json())["error"] == "Not Found"
        resp = await client.head("/")
        assert resp.status == 200

    serve(check)


def test_healthz_says_which_worker_is_down() -> None:
    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        resp = await client.get("/healthz")
        assert (resp.status, await resp.json()) == (200, {"ok": True})
        backend.workers["inference"] = "restarting"
        resp = await client.get("/healthz")
        assert (resp.status, await resp.json()) == (503, {"ok": False, "down": ["inference"]})
        backend.fail = HttpError(504, "the daemon did not answer within 3 s")
        resp = await client.get("/healthz")
        assert resp.status == 503
        assert await resp.json() == {"ok": False, "error": "the daemon did not answer within 3 s"}

    serve(check)


def test_readyz_is_200_when_ready_and_503_with_the_reason_otherwise() -> None:
    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        resp = await client.get("/readyz")
        assert (resp.status, await resp.json()) == (200, {"ready": True})
        backend.session = "abc"  # exclusive: a running session makes the daemon busy
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["reason"].startswith("busy: session abc belongs to")
        backend.session = None
        backend.workers["egress"] = "restarting"
        resp = await client.get("/readyz")
        assert (resp.status, await resp.json()) == (
            503, {"ready": False, "reason": "restarting: egress (restarting)"})
        backend.fail = HttpError(504, "the daemon did not answer within 3 s")
        resp = await client.get("/readyz")
        assert (resp.status, await resp.json()) == (
            503, {"ready": False, "reason": "the daemon did not answer within 3 s"})

    serve(check, exclusive=True)


def test_an_exclusive_session_admits_its_owners_key_and_refuses_others_with_503() -> None:
    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        sdp = {"Content-Type": "application/sdp"}
        first = await client.post("/whep", data="v=0\r\n", headers=sdp)
        assert first.status == 201
        key = first.headers["Reactor-Session-Key"]
        assert first.cookies["reactor_session"].value == key
        backend.session = "abc"
        # The same client: by header, by ?key=, and (a browser) by the cookie it was given.
        again = await client.post("/whip", data="v=0\r\n",
                                  headers={**sdp, "Reactor-Session-Key": key})
        assert again.status == 201
        by_query = await client.post(f"/whep?key={key}", data="v=0\r\n", headers=sdp)
        assert by_query.status == 201
        by_cookie = await client.post("/whep", data="v=0\r\n", headers=sdp)
        assert by_cookie.status == 201  # the test client's cookie jar sends it back
        client.session.cookie_jar.clear()
        other = await client.post("/whep", data="v=0\r\n", headers=sdp)
        # Busy: a balancer tries another daemon (RFC 9725 §4.8), told when to come back.
        assert (other.status, other.headers["Retry-After"]) == (503, "5")
        assert "belongs to the client that started it" in (await other.json())["error"]
        wrong = await client.post("/whep", data="v=0\r\n",
                                  headers={**sdp, "Reactor-Session-Key": "guess"})
        assert wrong.status == 503
        ready = await client.get("/readyz")
        assert ready.status == 503 and (await ready.json())["reason"].startswith("busy:")

    serve(check, exclusive=True)


def test_without_exclusive_no_key_is_handed_out() -> None:
    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        resp = await client.post("/whep", data="v=0\r\n",
                                 headers={"Content-Type": "application/sdp"})
        assert resp.status == 201
        assert "Reactor-Session-Key" not in resp.headers and not resp.cookies

    serve(check)


def test_status_is_the_status_object() -> None:
    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        resp = await client.get("/api/status")
        assert resp.status == 200
        body = await resp.json()
        assert (body["state"], body["pid"]) == ("running", 1234)
        assert [w["name"] for w in body["workers"]] == ["ingress", "inference", "egress"]

    serve(check)


def test_whip_answers_201_with_a_relative_location_and_ice_links() -> None:
    stun = IceServer.model_validate({"urls": "stun:stun.example.net:3478"})

    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        sdp_type = {"Content-Type": "application/sdp"}
        resp = await client.post("/whip", data="v=0 offer", headers=sdp_type)
        assert resp.status == 201
        assert resp.headers["Location"] == "/whip/s1"
        assert resp.headers["ETag"] == '"/whip/s1"'
        assert resp.headers.getall("Link") == ['<stun:stun.example.net:3478>; rel="ice-server"']
        assert await resp.text() == "v=0\r\nanswer-to:v=0 offer"
        resp = await client.post("/whip", data="v=0 offer", headers=sdp_type)
        assert (resp.status, resp.headers["Retry-After"]) == (503, "5")
        resp = await client.post("/whip", data="v=0", headers={"Content-Type": "text/plain"})
        assert resp.status == 415
        assert await resp.json() == {
            "error": "Content-Type must be application/sdp, found 'text/plain'"}
        resp = await client.post("/whip", data=b"\xff\xfe", headers=sdp_type)
        assert (resp.status, await resp.json()) == (400, {"error": "SDP offer is not UTF-8 text"})
        resp = await client.patch("/whip/s1", data="a=candidate", headers=sdp_type)
        assert resp.status == 405
        assert "trickle ICE is not supported" in (await resp.json())["error"]
        resp = await client.delete("/whip/s1")
        assert resp.status == 200
        resp = await client.delete("/whip/s1")
        assert (resp.status, await resp.json()) == (404, {"error": "no WHIP session 's1'"})

    serve(check, ice_servers=[stun])


def test_whep_offer_and_delete_reach_the_backend() -> None:
    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        resp = await client.post("/whep", data="v=0 watch",
                                 headers={"Content-Type": "application/sdp"})
        assert resp.status == 201
        assert resp.headers["Location"] == "/whep/w1"
        assert "Link" not in resp.headers  # no ICE servers configured
        resp = await client.delete("/whep/w1")
        assert resp.status == 200

    assert serve(check).closed_whep == ["w1"]


def test_options_gives_ice_servers_but_a_cors_preflight_does_not() -> None:
    turn = IceServer.model_validate(
        {"urls": "turn:turn.example.net:3478", "username": "u", "credential": "p"})

    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        resp = await client.options("/whep", headers=auth)
        assert resp.status == 204
        assert resp.headers["Allow"] == "OPTIONS, POST"
        (link,) = resp.headers.getall("Link")
        assert link.startswith("<turn:turn.example.net:3478>") and 'credential="p"' in link
        resp = await client.options("/whep")
        assert resp.status == 401
        preflight = {"Access-Control-Request-Method": "POST", "Origin": "http://example.net"}
        resp = await client.options("/whep", headers=preflight)
        assert resp.status == 204
        assert "Link" not in resp.headers
        assert resp.headers["Access-Control-Expose-Headers"] == (
            "Location, Link, ETag, Reactor-Session-Key, Reactor-Public-URL")

    serve(check, token=TOKEN, ice_servers=[turn])


def test_undeclared_method_is_a_json_405_with_allow() -> None:
    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        resp = await client.put("/api/status")
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET,HEAD"
        assert (await resp.json())["error"] == "Method Not Allowed"

    serve(check)


def test_events_stream_and_replay_after_last_event_id() -> None:
    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        events.publish("100.000000", '{"type": "session_start"}')
        events.publish("101.000000", '{"type": "message"}')
        resp = await client.get("/api/events", headers={"Last-Event-ID": "100.5"})
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        assert await resp.content.readuntil(b"\n\n") == b": connected\n\n"
        # The missed event newer than the id, then what is published from now on.
        assert await resp.content.readuntil(b"\n\n") == (
            b'id: 101.000000\ndata: {"type": "message"}\n\n')
        while events.subscribers == 0:
            await asyncio.sleep(0.01)
        events.publish("102.000000", '{"type": "session_end"}')
        assert await resp.content.readuntil(b"\n\n") == (
            b'id: 102.000000\ndata: {"type": "session_end"}\n\n')
        events.end()  # ingress stopping: the stream ends
        assert await resp.content.read() == b""
        assert events.subscribers == 0
        resp = await client.get("/api/events", params={"since": "yesterday"})
        assert resp.status == 400
        assert "Last-Event-ID or since must be an event id" in (await resp.json())["error"]

    serve(check)


def test_served_openapi_document_is_the_route_tables() -> None:
    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        resp = await client.get("/api/openapi.json")
        assert resp.status == 200
        assert await resp.json() == openapi_document({**MODEL_SCHEMA, "audio": SILENT})
        # Without the model's schema (inference restarting), the document has no commands.
        backend.fail = HttpError(503, "inference is restarting")
        resp = await client.get("/api/openapi.json")
        doc = await resp.json()
        assert resp.status == 200
        assert not [p for p in doc["paths"] if p.startswith("/api/commands/")]

    serve(check)


def test_schema_and_openapi_say_whether_the_model_speaks_and_listens() -> None:
    audio = AudioSection(output=True, input=True, sample_rate=16000, channels=2)
    expected = {"output": True, "input": True, "sample_rate": 16000, "channels": 2}

    async def check(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        resp = await client.get("/api/schema")
        assert resp.status == 200
        schema = await resp.json()
        assert schema["audio"] == expected
        assert schema["commands"] == MODEL_SCHEMA["commands"]
        doc = await (await client.get("/api/openapi.json")).json()
        assert doc["info"]["x-reactor-audio"] == expected
        assert "speaks" in doc["info"]["description"]
        assert "does not" not in doc["info"]["description"]
        described = doc["components"]["schemas"]["ModelSchema"]["properties"]["audio"]
        assert set(described["required"]) == set(expected)
        # Inference restarting: the document still says what the daemon does with sound.
        backend.fail = HttpError(503, "inference is restarting")
        doc = await (await client.get("/api/openapi.json")).json()
        assert doc["info"]["x-reactor-audio"] == expected

    serve(check, audio=audio)

    async def silent(client: TestClient[Any, Any], backend: Backend, events: EventFeed) -> None:
        assert (await (await client.get("/api/schema")).json())["audio"] == SILENT
        doc = await (await client.get("/api/openapi.json")).json()
        assert "does not speak" in doc["info"]["description"]
        assert "does not listen" in doc["info"]["description"]

    serve(silent)


def test_every_documented_operation_is_a_registered_route_and_back() -> None:
    doc = openapi_document(MODEL_SCHEMA)
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    commands = {("POST", f"/api/commands/{c['name']}") for c in MODEL_SCHEMA["commands"]}
    assert commands and commands <= documented
    app = build_app(Api(Backend(), EventFeed(), ServerSection.model_validate({})))
    registered = {(r.method, r.resource.canonical) for r in app.router.routes()
                  if r.resource is not None and r.method != "HEAD"}
    assert registered == {(r.method, r.path) for r in ROUTES}
    undocumented = {(r.method, r.path) for r in ROUTES if r.doc is None}
    assert undocumented == {("GET", "/index.html"), ("GET", "/app.js"), ("GET", "/style.css"),
                            ("PATCH", "/whip/{id}"), ("PATCH", "/whep/{id}")}
    assert documented == (registered - undocumented - {("POST", "/api/commands/{name}")}) | commands
    # Public routes are documented as needing no token; the rest need the bearer token.
    public = {path for path, ops in doc["paths"].items()
              for op in ops.values() if op.get("security") == []}
    assert public == {"/", "/healthz", "/readyz"}


def test_openapi_document_describes_each_command() -> None:
    doc = openapi_document(MODEL_SCHEMA)
    for cmd in MODEL_SCHEMA["commands"]:
        op = doc["paths"][f"/api/commands/{cmd['name']}"]["post"]
        assert op["operationId"] == f"command_{cmd['name']}"
        assert op["requestBody"]["content"]["application/json"]["schema"] == cmd["parameters"]
        assert op["summary"] == (cmd.get("description") or cmd["name"])
    assert doc["paths"]["/whip/{id}"]["delete"]["parameters"] == [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    assert doc["info"]["title"] == f"reactor: {MODEL_SCHEMA['model']}"

