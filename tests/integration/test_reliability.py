"""Faults injected into a real daemon: killed workers, misbehaving models.

Every test here asserts what a user would notice: the daemon keeps answering, the worker
comes back, clients hear why (server-sent events name the worker or the error), clients
can reconnect, and nothing leaks (shared memory, file descriptors, processes).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from reactor.client import Client, WhipError
from reactor.proto import telemetry_pb2 as tpb
from reactor.runtime.stats import alive as pid_alive
from tests.support.daemon import Daemon, descendants, shm_segments, wait_for
from tests.support.http import SMALL, post_json
from tests.support.tracks import SquareTrack

pytestmark = pytest.mark.timeout(300)

WORKERS = ("ingress", "inference", "egress")


# --- helpers --------------------------------------------------------------------------


class EventWatcher:
    """Reads ``/api/events`` on a thread, as a browser's ``EventSource`` would: when the
    connection drops (ingress died) it reconnects with ``Last-Event-ID``."""

    def __init__(self, d: Daemon, token: str | None = None) -> None:
        u = urlsplit(d.url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.events: list[dict[str, Any]] = []
        self.reconnects = 0
        self.last_id = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            self._conn = conn
            try:
                headers = dict(self.headers)
                if self.last_id:
                    headers["Last-Event-ID"] = self.last_id
                conn.request("GET", "/api/events", headers=headers)
                resp = conn.getresponse()
                if resp.status != 200:
                    raise OSError(f"status {resp.status}")
                while not self._stop.is_set():
                    line = resp.readline()
                    if not line:
                        break
                    text = line.decode().rstrip("\n")
                    if text.startswith("id: "):
                        self.last_id = text[4:]
                    elif text.startswith("data: "):
                        with self._lock:
                            self.events.append(json.loads(text[6:]))
            except (OSError, http.client.HTTPException, ValueError):
                pass
            finally:
                conn.close()
            if not self._stop.is_set():
                self.reconnects += 1
                time.sleep(0.2)

    def find(self, pred: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if pred(e)]

    def wait(self, pred: Any, timeout: float, what: str) -> dict[str, Any]:
        found = wait_for(lambda: self.find(pred), timeout, what)
        return found[-1]

    def close(self) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def zombies(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,stat=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout.split("\n")
    return [int(line.split()[0]) for line in out if line.strip() and "Z" in line.split()[1]]


def monitor_once(d: Daemon) -> None:
    r = d.cli("monitor", "--once", timeout=30)
    assert r.returncode == 0, r.stderr
    assert "inference" in r.stdout


# --- worker faults ----------------------------------------------------------------------


@pytest.mark.slow
def test_twenty_worker_kills_with_clients_connected(start_daemon) -> None:
    """kill -9 of ingress, inference and egress in turn, 20 times, while a WHIP sender
    sends and a WHEP viewer watches. The crash window is short so that spaced kills are
    not counted as a crash loop (a longer window would, correctly, back off and give up:
    see test_crash_loop_gives_up)."""
    d = start_daemon({**SMALL, "model": {"module": "reactor.examples.filters:Identity"},
                      "supervisor": {"crash_window_s": 8, "max_crashes": 5}})
    segments = shm_segments(f"reactor-{d.pid}-")
    assert len(segments) == 2
    watcher = EventWatcher(d)
    wait_for(lambda: watcher.reconnects == 0 and d.snapshot() is not None, 5, "SSE")
    timings: list[tuple[str, float]] = []
    killed: list[int] = []

    async def retry(post: Any) -> Any:
        deadline = time.monotonic() + 10
        while True:  # a worker still restarting answers 503 and Retry-After
            try:
                return await post()
            except WhipError as exc:
                if exc.status != 503 or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def connect(client: Client) -> tuple[Any, Any]:
        pub = await retry(lambda: client.publish(SquareTrack(320, 240, (200, 30, 30))))
        viewer = await retry(client.watch)
        await asyncio.wait_for(viewer.recv(), 15)  # frames flow end to end again
        return pub, viewer

    async def drop(*conns: Any) -> None:
        for c in conns:
            try:
                await asyncio.wait_for(c.close(), 5)
            except Exception:  # the worker that held it died: the DELETE finds nothing
                pass

    async def run() -> None:
        async with Client(d.url) as client:
            pub, viewer = await connect(client)
            await asyncio.sleep(0.5)
            base_fds = fd_count(d.pid)
            base_children = len(descendants(d.pid))
            try:
                for i in range(20):
                    name = WORKERS[i % 3]
                    old = (await asyncio.to_thread(d.worker_pids))[name]
                    seen = len(watcher.find(lambda e, n=name: e["type"] == "worker"
                                            and e["data"]["worker"] == n))
                    os.kill(old, signal.SIGKILL)
                    killed.append(old)
                    t0 = time.monotonic()

                    def back(name: str = name, old: int = old) -> bool:
                        w = d.worker(name)
                        return w.state == tpb.WORKER_STATE_RUNNING and w.pid not in (0, old)

                    await asyncio.to_thread(wait_for, back, 5.0, f"{name} to restart")
                    timings.append((name, time.monotonic() - t0))
                    # The daemon kept answering; the monitor too.
                    assert (await asyncio.to_thread(d.status))["state"] in ("running",
                                                                           "degraded")
                    if i < 3:
                        await asyncio.to_thread(monitor_once, d)
                    # Clients heard it: a worker event naming the worker (replayed to a
                    # reconnecting SSE client when ingress itself died).
                    def heard(n: str = name, s: int = seen) -> bool:
                        return len(watcher.find(
                            lambda e: e["type"] == "worker" and e["data"]["worker"] == n
                        )) >= s + 2

                    events = await asyncio.to_thread(
                        wait_for, heard, 10, f"worker events for {name} in {watcher.events}")
                    assert events
                    died = watcher.find(lambda e, n=name: e["type"] == "worker"
                                        and e["data"]["worker"] == n
                                        and e["data"]["state"] == "restarting")[-1]
                    assert f"{name} died" in died["reason"]
                    if name == "inference":
                        assert watcher.find(lambda e: e["type"] == "error"
                                            and "inference worker died" in (e["reason"] or ""))
                    # Peer connections died with the worker that held them: a new WHIP and
                    # WHEP POST work after the restart.
                    await drop(viewer, pub)
                    pub, viewer = await connect(client)
            finally:
                await drop(viewer, pub)
            # The last restart's sockets and children are let go: wait for it, then check.
            await asyncio.to_thread(
                wait_for, lambda: fd_count(d.pid) <= base_fds + 2
                and len(descendants(d.pid)) == base_children, 10, "fds and children back")
            assert fd_count(d.pid) <= base_fds + 2, (base_fds, fd_count(d.pid))
            assert len(descendants(d.pid)) == base_children

    try:
        asyncio.run(run())
    finally:
        watcher.close()
    print("restart times:", [(n, round(t, 2)) for n, t in timings])
    assert all(t < 5.0 for _, t in timings)
    assert all(not pid_alive(p) for p in killed)
    assert zombies(d.pid) == []
    assert shm_segments(f"reactor-{d.pid}-") == segments
    snap = d.snapshot()
    assert snap.state == tpb.DAEMON_STATE_RUNNING
    restarts = {w.name: w.restarts for w in snap.workers}
    # Each worker restarts only when it is the one killed (egress outlives inference).
    assert restarts["ingress"] == 7 and restarts["inference"] == 7, restarts
    assert restarts["egress"] == 6, restarts
    print("restarts:", restarts)
    monitor_once(d)


def test_inference_restart_keeps_egress_and_its_viewers(start_daemon) -> None:
    d = start_daemon(SMALL)

    async def run() -> None:
        async with Client(d.url) as client, await client.watch() as viewer:
            await asyncio.wait_for(viewer.recv(), 15)
            egress = (await asyncio.to_thread(d.worker_pids))["egress"]
            inference = (await asyncio.to_thread(d.worker_pids))["inference"]
            os.kill(inference, signal.SIGKILL)
            await asyncio.to_thread(
                wait_for, lambda: d.worker("inference").pid not in (0, inference)
                and d.worker("inference").state == tpb.WORKER_STATE_RUNNING, 15,
                "inference to restart")
            assert (await asyncio.to_thread(d.worker_pids))["egress"] == egress
            for _ in range(30):  # the same viewer sees the restarted model's frames
                await asyncio.wait_for(viewer.recv(), 10)

    asyncio.run(run())


def test_crash_loop_gives_up_and_a_restart_request_recovers(start_daemon) -> None:
    d = start_daemon({**SMALL, "supervisor": {"max_crashes": 3, "crash_window_s": 60}})
    for _ in range(3):
        old = d.worker("inference").pid
        os.kill(old, signal.SIGKILL)
        def back_or_failed(old: int = old) -> bool:
            w = d.worker("inference")
            return bool(w.pid not in (0, old) or w.state == tpb.WORKER_STATE_FAILED)

        wait_for(back_or_failed, 10, "inference back or failed")
        if d.worker("inference").state != tpb.WORKER_STATE_FAILED:
            wait_for(lambda: d.worker("inference").state == tpb.WORKER_STATE_RUNNING, 10,
                     "inference up")
    snap = d.snapshot()
    assert snap.state == tpb.DAEMON_STATE_FAILED
    assert "supervisor.max_crashes" in snap.error and "crashed 3 times" in snap.error
    assert d.worker("inference").state == tpb.WORKER_STATE_FAILED
    monitor_once(d)  # a failed daemon still answers
    assert d.cli("daemon", "restart", "inference").returncode == 0
    wait_for(lambda: d.snapshot().state == tpb.DAEMON_STATE_RUNNING, 10, "the daemon to recover")


# --- model faults -----------------------------------------------------------------------


def test_command_handler_exception_is_a_500_and_the_session_goes_on(start_daemon) -> None:
    d = start_daemon({**SMALL, "model": {"module": "models:FailingCommand"}})
    with d.client() as c:
        c.start_session()
        wait_for(lambda: d.snapshot().session.state == tpb.SESSION_STATE_LIVE, 5, "session live")
        sid = d.snapshot().session.id
    status, body = post_json(d, "/api/commands/explode", {"why": "on purpose"})
    assert status == 500
    assert "ValueError" in body["error"] and "handler exploded: on purpose" in body["error"]
    status, body = post_json(d, "/api/commands/set_value", {"value": 7})
    assert (status, body["result"]) == (200, 7)
    snap = d.snapshot()
    assert snap.session.id == sid and snap.session.state == tpb.SESSION_STATE_LIVE
    assert d.worker("inference").restarts == 0
    log = [c for c in snap.session.commands if c.name == "explode"]
    assert log and not log[-1].ok


def test_model_that_ignores_stop_gets_its_worker_restarted(start_daemon) -> None:
    d = start_daemon({**SMALL, "model": {"module": "models:IgnoresStop"},
                      "session": {"stall_timeout_s": 1.0, "stop_grace_s": 1.0}})
    watcher = EventWatcher(d)
    try:
        old = d.worker("inference").pid
        with d.client() as c:
            c.start_session()
        ev = watcher.wait(lambda e: e["type"] == "error" and "stop_grace_s" in (e["reason"] or ""),
                          10, "the stuck model's error event")
        assert "stall_timeout_s" in ev["reason"]
        wait_for(lambda: d.worker("inference").pid not in (0, old)
                 and d.worker("inference").state == tpb.WORKER_STATE_RUNNING, 10,
                 "inference restart")
        watcher.wait(lambda e: e["type"] == "worker" and e["data"]["worker"] == "inference"
                     and e["data"]["state"] == "running", 5, "the restart event")
        w = d.worker("inference")
        assert w.restarts == 1
        wait_for(lambda: d.snapshot().state == tpb.DAEMON_STATE_RUNNING, 5, "the daemon running")
        restarts = {w.name: w.restarts for w in d.snapshot().workers}
        assert (restarts["ingress"], restarts["inference"]) == (0, 1)
        assert not pid_alive(old)
    finally:
        watcher.close()


@pytest.mark.parametrize(("kind", "expected"), [
    ("shape", "(240, 320, 3)"),
    ("dtype", "int64"),
])
def test_wrong_frames_end_the_session_with_the_frame_error(start_daemon, kind: str,
                                                            expected: str) -> None:
    d = start_daemon({**SMALL, "model": {"module": "models:WrongShape", "args": {"kind": kind}}})
    watcher = EventWatcher(d)
    try:
        with d.client() as c:
            c.start_session()
        ev = watcher.wait(lambda e: e["type"] == "error", 10, "the session's error event")
        assert "FrameError" in ev["reason"] and expected in ev["reason"], ev["reason"]
        wait_for(lambda: not d.snapshot().HasField("session"), 5, "the session to end")
        logs = [line.message for line in d.snapshot().logs]
        assert any("FrameError" in m for m in logs), logs
        assert d.worker("inference").restarts == 0
    finally:
        watcher.close()


@pytest.mark.parametrize("keep", [False, True], ids=["released", "kept"])
def test_memory_limit_ends_the_session_and_the_next_one_works(start_daemon, tmp_path: Path,
                                                               keep: bool) -> None:
    limit = 400
    d = start_daemon({**SMALL, "model": {"module": "models:MemoryHog", "args": {
        "mb_per_frame": 16, "keep": keep, "marker": str(tmp_path / "hogged")}},
        "session": {"max_rss_mb": limit}})
    watcher = EventWatcher(d)
    try:
        old = d.worker("inference").pid
        with d.client() as c:
            c.start_session()
        ev = watcher.wait(lambda e: e["type"] == "error", 20, "the memory error event")
        assert "session.max_rss_mb = 400" in ev["reason"], ev["reason"]
        wait_for(lambda: not d.snapshot().HasField("session"), 5, "the session to end")
        if keep:  # the model kept it: only a new process gives it back
            wait_for(lambda: d.worker("inference").pid not in (0, old)
                     and d.worker("inference").state == tpb.WORKER_STATE_RUNNING, 10,
                     "inference restart")
            # The restart says why (the worker's last_error is cleared once it restarts).
            watcher.wait(lambda e: e["type"] == "worker" and "still uses" in (e["reason"] or ""),
                         5, "a worker event naming the memory the model kept")
        else:
            assert d.worker("inference").pid == old
        w = d.worker("inference")
        assert w.rss_bytes < limit * 1024 * 1024, w.rss_bytes
        with d.client() as c:
            c.start_session()
        wait_for(lambda: d.snapshot().session.frames_emitted > 30, 10, "the next session")
        assert d.worker("inference").rss_bytes < limit * 1024 * 1024
    finally:
        watcher.close()
