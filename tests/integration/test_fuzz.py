"""Bad input on every surface of a live daemon: hostile SDP and JSON, slow clients, offer
floods, garbage on the ZeroMQ sockets, and hypothesis-driven HTTP and control fuzzing.

Every refusal must be a clear error (a status and a JSON reason), and nothing may crash:
each test ends by checking that the worker pids did not change.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import socket
import string
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import av
import pytest
import yaml
import zmq
from aiortc import RTCConfiguration, RTCPeerConnection
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from reactor.control.rundir import RunDir, tail_lines
from reactor.proto import control_pb2 as cpb
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb
from reactor.runtime.stats import alive as pid_alive
from tests.support.daemon import Daemon, shm_segments, wait_for
from tests.support.http import SMALL, post_json, request
from tests.support.tracks import SquareTrack

pytestmark = pytest.mark.timeout(240)

WORKERS = ("ingress", "inference", "egress")
FUZZ = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


async def _offer(kind: str) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        if kind == "whip":
            pc.addTransceiver(SquareTrack(320, 240, (0, 0, 0)), direction="sendonly")
        else:
            pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


def offer(kind: str) -> str:
    return asyncio.run(_offer(kind))


def sdp_post(d: Daemon, path: str, body: bytes | str,
             ctype: str = "application/sdp") -> tuple[int, Any]:
    return request(d, "POST", path, body, {"Content-Type": ctype})


def assert_unchanged(d: Daemon, pids: dict[str, int]) -> None:
    snap = d.snapshot()
    assert snap.state == tpb.DAEMON_STATE_RUNNING, snap.error
    logs = "\n".join(line for n in ("supervisor", *WORKERS)
                     for line in tail_lines(d.run_dir / "logs" / f"{n}.log", 15))
    assert {w.name: w.pid for w in snap.workers} == pids, logs
    assert all(w.restarts == 0 for w in snap.workers)


# --- HTTP: hostile SDP and JSON -------------------------------------------------------------


def test_hostile_sdp_is_refused_with_reasons(start_daemon) -> None:
    d = start_daemon(SMALL)
    pids = d.worker_pids()
    whep, whip = offer("whep"), offer("whip")
    cases: list[tuple[str, bytes | str, str, int, str]] = [
        ("/whep", "v=0\r\n" + "a=x-pad:" + "A" * 70_000 + "\r\n", "application/sdp", 413,
         "over"),
        ("/whep", whep[: len(whep) // 2], "application/sdp", 400, ""),
        ("/whip", whip[:40], "application/sdp", 400, ""),
        ("/whep", os.urandom(2000), "application/sdp", 400, ""),
        ("/whep", b"\x00" * 100, "application/sdp", 400, ""),
        ("/whep", "", "application/sdp", 400, "empty"),
        ("/whep", whep, "application/json", 415, "application/sdp"),
        ("/whip", whip, "text/plain", 415, "application/sdp"),
        ("/whep", whep.replace("m=video", "m=bogus"), "application/sdp", 400, ""),
        ("/whip", whep, "application/sdp", 400, "video"),  # recvonly offer to WHIP
        ("/whep", "v=0\r\n" * 10_000, "application/sdp", 400, ""),
    ]
    for path, body, ctype, status, words in cases:
        got, reply = sdp_post(d, path, body, ctype)
        assert got == status, (path, str(body)[:80], ctype, got, reply)
        assert isinstance(reply, dict) and reply["error"], reply
        assert words in reply["error"], reply
    # A body far over the limit, sent chunked (no Content-Length), is cut off at the limit.
    u = urlsplit(d.url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(b"POST /whep HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"a=x:" + b"B" * 8000 + b"\r\n"
        try:
            for _ in range(200):
                s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before we were done: fine
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    # The daemon still answers offers properly.
    got, answer = sdp_post(d, "/whep", whep)
    assert got == 201 and answer.startswith(b"v=0")
    assert_unchanged(d, pids)


def test_bad_command_bodies_are_clear_errors(start_daemon) -> None:
    d = start_daemon(SMALL)
    pids = d.worker_pids()
    cases: list[tuple[str, Any, int, str | None]] = [
        ("no_such_command", {}, 404, None),
        ("set_speed", {"speed": "fast"}, 422, "speed"),
        ("set_speed", {"speed": 1e9}, 422, "speed"),
        ("set_speed", {"speed": None}, 422, "speed"),
        ("set_speed", {"speed": [1]}, 422, "speed"),
        ("set_speed", {"sped": 1}, 422, "sped"),
        ("set_text", {"text": "x" * 41}, 422, "text"),
        ("set_text", {"text": {"a": 1}}, 422, "text"),
        ("pause", {"paused": "maybe"}, 422, "paused"),
        ("set_speed", [1, 2], 422, None),
        ("set_speed", "speed", 422, None),
    ]
    for name, body, status, field in cases:
        got, reply = post_json(d, f"/api/commands/{name}", body)
        assert got == status, (name, body, got, reply)
        assert reply["error"]
        if field:
            assert reply.get("field") == field and field in reply["error"], reply
    raw_cases: list[tuple[bytes, int, str]] = [
        (b"{not json", 400, "not valid JSON"),
        (b"[" * 60_000, 400, "not valid JSON"),                      # deep nesting
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400, "not valid JSON"),
        (b'{"speed": ' + b"9" * 50_000 + b"}", 400, "not valid JSON"),  # huge integer
        (b'{"speed": 1}' + b" " * 70_000, 413, "over"),
        (b"\xff\xfe\x00garbage", 400, "not valid JSON"),
    ]
    for body, status, words in raw_cases:
        got, reply = request(d, "POST", "/api/commands/set_speed", body,
                             {"Content-Type": "application/json"})
        assert got == status, (body[:40], got, reply)
        assert words in reply["error"], reply
    got, reply = post_json(d, "/api/commands/set_speed", {"speed": 3})
    assert got == 200 and reply["ok"]
    assert_unchanged(d, pids)


# --- slow and greedy clients --------------------------------------------------------------


def test_slow_loris_connections_time_out_and_others_are_served(start_daemon) -> None:
    d = start_daemon({**SMALL, "server": {"idle_timeout_s": 2.0}})
    pids = d.worker_pids()
    u = urlsplit(d.url)
    addr = (u.hostname or "127.0.0.1", u.port or 0)
    slow = []
    for _ in range(150):
        s = socket.create_connection(addr, timeout=5)
        s.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow.append(s)
    stop = threading.Event()
    closed: set[int] = set()

    def dribble() -> None:  # one header byte per connection, over and over
        while not stop.is_set():
            for i, s in enumerate(slow):
                if i in closed:
                    continue
                try:
                    s.sendall(b"a")
                except OSError:
                    closed.add(i)
            time.sleep(0.25)

    t = threading.Thread(target=dribble, daemon=True)
    t.start()
    # A body that never completes is a 408 after the same time.
    body_conn = socket.create_connection(addr, timeout=10)
    body_conn.sendall(b"POST /api/commands/set_speed HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"sp")
    try:
        t0 = time.monotonic()
        for _ in range(10):  # others are served promptly meanwhile
            s0 = time.monotonic()
            status, _ = request(d, "GET", "/healthz", timeout=5)
            assert status == 200 and time.monotonic() - s0 < 1.0
            time.sleep(0.1)
        reply = body_conn.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408") and b"server.idle_timeout_s" in reply, reply
        # Every slow connection is closed by the server a little after the timeout.
        for s in slow:
            s.settimeout(max(0.1, 6.0 - (time.monotonic() - t0)))
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            except TimeoutError:
                data = b"(still open)"
            assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:100]
        assert time.monotonic() - t0 < 8.0
    finally:
        stop.set()
        t.join(2)
        for s in slow:
            s.close()
        body_conn.close()
    assert request(d, "GET", "/healthz")[0] == 200
    assert_unchanged(d, pids)


@pytest.mark.slow
def test_a_flood_of_whep_offers_is_bounded_by_max_viewers(start_daemon) -> None:
    d = start_daemon({**SMALL, "server": {"max_viewers": 8}})
    pids = d.worker_pids()
    sdp = offer("whep")
    url = d.url.rstrip("/")

    async def flood(n: int) -> tuple[list[int], list[str]]:
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn,
                                         timeout=aiohttp.ClientTimeout(total=60)) as http:
            async def one() -> tuple[int, str]:
                async with http.post(url + "/whep", data=sdp,
                                     headers={"Content-Type": "application/sdp"}) as r:
                    body = await r.text()
                    return r.status, (r.headers.get("Location", "") if r.status == 201
                                      else body)

            results = await asyncio.gather(*(one() for _ in range(n)))
            statuses = [s for s, _ in results]
            for s, body in results:
                if s == 503:
                    assert "server.max_viewers" in body, body
            created = [loc for s, loc in results if s == 201]
            for loc in created:
                async with http.delete(url + loc) as r:
                    assert r.status == 200
            return statuses, created

    def egress_rss() -> int:
        return int(d.worker("egress").rss_bytes)

    rss = [egress_rss()]
    for _ in range(2):
        statuses, created = asyncio.run(flood(200))
        assert set(statuses) <= {201, 503}, statuses
        assert 1 <= len(created) <= 8, statuses
        assert statuses.count(503) >= 192
        assert request(d, "GET", "/healthz")[0] == 200
        wait_for(lambda: d.status()["session"] is None
                 or d.status()["session"]["viewers"] == 0, 10, "viewers to leave")
        time.sleep(1.0)
        rss.append(egress_rss())
    # Memory comes back: the second flood does not add to what the first left behind.
    assert rss[2] - rss[1] < 40 * 1024 * 1024, rss
    assert_unchanged(d, pids)


# --- ZeroMQ sockets -------------------------------------------------------------------------


def _dangerous(req: cpb.Request) -> bool:
    """Requests that would (rightly) change the daemon: stop it or restart a worker."""
    kind = req.WhichOneof("body")
    return kind == "stop" or (kind == "restart_worker" and req.restart_worker.worker in WORKERS)


_text = st.text(max_size=60)
_requests = st.one_of(
    st.just(cpb.Request(status=cpb.StatusRequest())),
    st.just(cpb.Request(schema=cpb.SchemaRequest())),
    st.builds(lambda n: cpb.Request(restart_worker=cpb.RestartWorkerRequest(worker=n)),
              _text.filter(lambda n: n not in WORKERS)),
    st.builds(lambda n, a: cpb.Request(command=cpb.CommandRequest(name=n, args_json=a)),
              st.sampled_from(["set_speed", "set_text", "pause", ""]) | _text,
              _text | st.builds(json.dumps, st.dictionaries(
                  st.sampled_from(["speed", "text", "paused", "x"]),
                  st.none() | st.booleans() | st.floats() | st.integers() | _text))),
    st.builds(lambda a, r, s: cpb.Request(session=cpb.SessionRequest(
        action=a, reason=r, session_id=s)), st.sampled_from([0, 1, 7]), _text, _text),
    st.builds(lambda r, s, c: cpb.Request(whep=cpb.WhepRequest(resource_id=r, sdp=s, close=c)),
              _text, _text, st.booleans()),
)


def test_garbage_and_fuzzed_requests_on_the_zeromq_sockets(start_daemon) -> None:
    d = start_daemon(SMALL)
    pids = d.worker_pids()
    rd = RunDir(d.run_dir)
    ctx = zmq.Context()
    try:
        control = ctx.socket(zmq.DEALER)
        control.setsockopt(zmq.LINGER, 0)
        control.connect(rd.endpoint("control"))
        fake = ctx.socket(zmq.DEALER)
        fake.setsockopt(zmq.LINGER, 0)
        fake.setsockopt(zmq.IDENTITY, b"not-a-worker")
        fake.connect(rd.endpoint("workers"))
        anon = ctx.socket(zmq.DEALER)
        anon.setsockopt(zmq.LINGER, 0)
        anon.connect(rd.endpoint("workers"))
        ids = iter(range(1, 10**9))

        def ask(req: cpb.Request) -> cpb.Reply:
            req.id = next(ids)
            control.send_multipart([b"", req.SerializeToString()])
            deadline = time.monotonic() + 15
            while control.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                reply = cpb.Reply()
                reply.ParseFromString(control.recv_multipart()[-1])
                if reply.id == req.id:
                    return reply
            raise AssertionError(f"no reply to {req}")

        @FUZZ
        @given(st.lists(st.binary(max_size=400), min_size=1, max_size=5))
        def random_frames(frames: list[bytes]) -> None:
            for payload in frames:
                probe = cpb.Request()
                try:
                    probe.ParseFromString(payload)
                except Exception:
                    continue
                assume(not _dangerous(probe))
            control.send_multipart(frames)
            fake.send_multipart(frames)
            anon.send_multipart(frames)

        @FUZZ
        @given(_requests, st.integers(0, 200))
        def requests(req: cpb.Request, cut: int) -> None:
            assume(not _dangerous(req))
            reply = ask(req)  # every well-formed request gets an answer
            assert reply.HasField("error") or reply.WhichOneof("body") is not None
            if reply.HasField("error"):
                assert reply.error.message and reply.error.status >= 400
            data = req.SerializeToString()
            control.send_multipart([b"", data[:cut]])  # truncated protobuf
            msg = wpb.FromWorker(worker=WORKERS[cut % 3], pid=cut, request=req)
            fake.send(msg.SerializeToString()[:cut])

        random_frames()
        requests()
        # Raw bytes that are not ZeroMQ at all, on every socket.
        for name in ("control", "workers", "telemetry"):
            for _ in range(5):
                with socket.socket(socket.AF_UNIX) as raw:
                    raw.connect(str(rd.socket_path(name)))
                    raw.sendall(os.urandom(512))
        # A misbehaving subscriber of the telemetry PUB socket: garbage subscriptions.
        xsub = ctx.socket(zmq.XSUB)
        xsub.setsockopt(zmq.LINGER, 0)
        xsub.connect(rd.endpoint("telemetry"))
        for _ in range(200):
            xsub.send(os.urandom(64))
        xsub.send(b"\x01")  # subscribe to everything, then never read: PUB must not care
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(rd.endpoint("telemetry"))
        assert sub.poll(5000), "no telemetry after the garbage"
        snap = tpb.Snapshot()
        snap.ParseFromString(sub.recv())
        assert snap.state == tpb.DAEMON_STATE_RUNNING
        assert ask(cpb.Request(status=cpb.StatusRequest())).status.state == tpb.DAEMON_STATE_RUNNING
    finally:
        ctx.destroy(0)
    log = d.run_dir / "logs" / "supervisor.log"
    wait_for(lambda: "dropped a malformed message" in log.read_text(), 10,
             "the supervisor to log the garbage it dropped")
    assert_unchanged(d, pids)


# --- HTTP fuzzing ---------------------------------------------------------------------------

_path_chars = string.ascii_letters + string.digits + "/._-~%:@!$&'()*+,;="
_paths = st.one_of(
    st.sampled_from(["/", "/api/schema", "/api/status", "/api/openapi.json", "/healthz",
                     "/whip", "/whep", "/api/commands/set_speed", "/app.js"]),
    st.builds(lambda a, b: a + b,
              st.sampled_from(["/", "/api/", "/api/commands/", "/whip/", "/whep/", "/app.js/"]),
              st.text(_path_chars, max_size=40)),
)
_header_names = st.text(string.ascii_letters + "-", min_size=1, max_size=20).filter(
    lambda h: h.lower() not in ("content-length", "transfer-encoding", "host", "connection",
                                "expect", "upgrade"))
_headers = st.dictionaries(_header_names, st.text(string.printable.strip(), max_size=60),
                           max_size=5)
_json = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=30,
)


def test_http_api_fuzz(start_daemon) -> None:
    d = start_daemon(SMALL)
    pids = d.worker_pids()
    seen: dict[int, int] = {}

    def check(status: int, body: Any, what: str) -> None:
        seen[status] = seen.get(status, 0) + 1
        assert status < 500 or status == 503, (what, status, body)
        if status >= 400 and isinstance(body, dict):
            assert body.get("error"), (what, body)

    @FUZZ
    @given(st.sampled_from(["GET", "POST", "DELETE", "PATCH", "PUT", "OPTIONS", "HEAD"]),
           _paths, _headers, st.binary(max_size=300))
    def anything(method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        assume(path.split("?")[0] != "/api/events")
        status, reply = request(d, method, path, body, headers, timeout=20)
        check(status, reply, f"{method} {path}")

    @FUZZ
    @given(st.sampled_from(["set_speed", "set_text", "pause", "nope", "__init__"]), _json)
    def commands(name: str, args: Any) -> None:
        status, reply = post_json(d, f"/api/commands/{name}", args, timeout=20)
        check(status, reply, f"command {name} {args!r}")
        assert status in (200, 400, 404, 422), (name, args, status, reply)

    anything()
    commands()
    print("statuses:", dict(sorted(seen.items())))
    assert_unchanged(d, pids)


# --- reactor run with damaged input ---------------------------------------------------------


def test_run_with_a_damaged_input_video_ends_cleanly(tmp_path: Path) -> None:
    from tests.support.daemon import run_cli
    from tests.support.video import make_ramp_video

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"module": "reactor.examples.filters:Brightness"},
                                   **SMALL}))
    src = tmp_path / "in.mp4"
    make_ramp_video(src, 60)
    data = bytearray(src.read_bytes())
    rng = random.Random(7)
    for _ in range(200):  # flip bytes in the middle: damaged frames, intact container head
        i = rng.randrange(len(data) // 4, len(data) * 3 // 4)
        data[i] ^= 0xFF
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    before = shm_segments()
    r = run_cli("run", "-c", str(cfg), "--input", str(damaged), "--output",
                str(tmp_path / "out.mp4"), "--lossless", timeout=120)
    # The decoder skips what it cannot read; every frame it did read is processed and
    # written, and the run says so (the damage is deterministic: seeded flips).
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    m = re.search(r"(\d+) input frames: (\d+) processed, 0 dropped; (\d+) frames written",
                  r.stdout)
    assert m, r.stdout
    read, processed, written = map(int, m.groups())
    assert 0 < read < 60 and processed == read and written == read, r.stdout
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == written
    # Other daemons may come and go meanwhile: a leak is a new segment of a dead process.
    leaked = {seg for seg in shm_segments() - before if not pid_alive(int(seg.split("-")[1]))}
    assert leaked == set()
