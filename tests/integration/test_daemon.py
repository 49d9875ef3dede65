"""The daemon as a whole: real supervisor, real worker processes, rings and sockets."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from reactor.control.rundir import RunDir
from reactor.ipc import RingHandle, ShmRing
from reactor.proto import telemetry_pb2 as tpb
from reactor.runtime.stats import alive as pid_alive
from tests.support.daemon import Daemon, descendants, run_cli, shm_segments, wait_for

SMALL = {"video": {"width": 320, "height": 240, "fps": 30}}
WORKERS = ("ingress", "inference", "egress")


def worker_pids(d: Daemon) -> dict[str, int]:
    return {w.name: w.pid for w in d.snapshot().workers}


@pytest.mark.slow
def test_kill_each_worker_restarts_and_stop_leaves_nothing(start_daemon) -> None:
    d = start_daemon(SMALL)
    status = d.status()
    assert status["state"] == "running"
    assert [w["name"] for w in status["workers"]] == list(WORKERS)
    assert all(w["state"] == "running" and w["pid"] for w in status["workers"])
    segments = shm_segments(f"reactor-{d.pid}-")
    assert len(segments) == 2

    for name in WORKERS:
        old = worker_pids(d)[name]
        os.kill(old, signal.SIGKILL)
        t0 = time.monotonic()

        def restarted(name: str = name, old: int = old) -> bool:
            w = d.worker(name)
            return w.state == tpb.WORKER_STATE_RUNNING and w.pid not in (0, old)

        wait_for(restarted, 5.0, f"{name} to restart")
        assert time.monotonic() - t0 < 5.0
        w = d.worker(name)
        assert w.restarts == 1
        assert not pid_alive(old)
    assert d.status()["state"] == "running"  # the daemon kept answering throughout

    children = descendants(d.pid)
    r = d.cli("daemon", "stop")
    assert r.returncode == 0, r.stderr
    d.stopped = True
    wait_for(lambda: not pid_alive(d.pid), 10, "the supervisor to exit")
    assert all(not pid_alive(p) for p in children)
    assert shm_segments(f"reactor-{d.pid}-") == set()
    rd = RunDir(d.run_dir)
    assert not rd.pidfile.exists()
    assert not list(d.run_dir.glob("*.sock"))


@pytest.mark.slow
def test_supervisor_kill9_takes_workers_down_and_next_start_recovers(start_daemon) -> None:
    d = start_daemon(SMALL)
    pids = list(worker_pids(d).values())
    os.kill(d.pid, signal.SIGKILL)
    wait_for(lambda: all(not pid_alive(p) for p in pids), 5.0, "orphaned workers to exit")
    d.stopped = True
    # The run directory is stale (dead pid): a new daemon recovers it.
    for seg in shm_segments(f"reactor-{d.pid}-"):
        ShmRing.unlink_name(seg)
    r = run_cli("daemon", "start", "-c", str(d.config_path), "--run-dir", str(d.run_dir),
                env=d.env, timeout=120)
    assert r.returncode == 0, r.stderr
    d2 = Daemon(d.run_dir, d.config_path, d.env, pid=RunDir(d.run_dir).read_pid() or 0)
    try:
        assert d2.status()["state"] == "running"
        # A second daemon on a live run directory is refused, naming the pid.
        r = run_cli("daemon", "start", "-c", str(d.config_path), "--run-dir", str(d.run_dir),
                    env=d.env)
        assert r.returncode != 0 and f"pid {d2.pid}" in r.stderr
    finally:
        d2.stop()


def test_frames_flow_through_the_rings_and_commands_apply(start_daemon) -> None:
    # device cpu: the test attaches to the output ring as a ShmRing (a GPU machine's
    # "auto" would put it on the device).
    d = start_daemon({**SMALL, "device": "cpu", "model": {"module": "models:Counter"}})
    out = ShmRing.attach(RingHandle_for(d, "output"))
    reader = out.reader()
    try:
        with d.client() as c:
            sid = c.start_session()
            assert sid
            frame = wait_for(lambda: reader.read(0.5), 5.0, "a frame in the output ring")
            assert frame.array.shape == (240, 320, 3)
            assert c.command("set_value", {"value": 200}) == 200
            # The command took effect on the next frame: a value of 200 (+ frames since).
            values = []
            for _ in range(5):
                f = wait_for(lambda: reader.read(0.5), 5.0, "frames")
                values.append(int(f.array[0, 0, 0]))
            assert any(200 <= v <= 215 for v in values), values
            snap = c.status()
            assert snap.session.id == sid and snap.session.state == tpb.SESSION_STATE_LIVE
            assert snap.session.commands[-1].name == "set_value"
            c.stop_session()
            wait_for(lambda: not d.snapshot().HasField("session"), 5.0, "the session to end")
    finally:
        reader.close()
        out.close()


def RingHandle_for(d: Daemon, ring: str) -> RingHandle:
    """The handle of a running daemon's ring, so a test can attach as a stand-in for a
    worker."""
    return ShmRing.handle_for(f"reactor-{d.pid}-{ring}")


def test_identity_model_passes_input_ring_frames_to_output(start_daemon) -> None:
    d = start_daemon({**SMALL, "device": "cpu",
                      "model": {"module": "reactor.examples.filters:Identity"}})
    inp = ShmRing.attach(RingHandle_for(d, "input"))
    out = ShmRing.attach(RingHandle_for(d, "output"))
    reader = out.reader()
    try:
        with d.client() as c:
            c.start_session()
            wait_for(lambda: d.snapshot().session.state == tpb.SESSION_STATE_LIVE, 5,
                     "session live")
            seen = set()
            for i in range(1, 40):
                marker = np.full((240, 320, 3), i, np.uint8)
                inp.write(marker, frame_id=i)
                f = reader.read(0.5)
                if f is not None:
                    seen.add(int(f.array[10, 10, 0]))
                    assert np.all(f.array == f.array[0, 0]), np.unique(f.array, return_counts=True)
                time.sleep(0.03)
            assert len(seen & set(range(1, 40))) >= 20
    finally:
        reader.close()
        out.close()
        inp.close()


def test_start_session_exception_is_reported_without_a_crash_loop(start_daemon) -> None:
    d = start_daemon({**SMALL, "model": {"module": "models:FailOnStart"}})
    with d.client() as c:
        c.start_session()
        wait_for(lambda: not d.snapshot().HasField("session"), 5, "the failed session to end")
        snap = c.status()
        assert any("boom in start_session" in line.message for line in snap.logs)
        inference = next(w for w in snap.workers if w.name == "inference")
        assert inference.restarts == 0 and inference.state == tpb.WORKER_STATE_RUNNING
        # The model stayed loaded: the next session works.
        c.start_session()
        wait_for(lambda: d.snapshot().session.frames_emitted > 0, 10,
                 "the next session to emit frames")
        snap = c.status()
        assert snap.session.state == tpb.SESSION_STATE_LIVE and snap.session.frames_emitted > 0
    log = (d.run_dir / "logs" / "inference.log").read_text()
    assert "boom in start_session" in log


def test_load_failure_fails_start_with_a_clear_error(start_daemon) -> None:
    d = start_daemon({**SMALL, "model": {"module": "models:FailOnLoad"}}, expect_ok=False)
    r = d.extra["start"]
    assert r.returncode != 0
    assert "cannot find weights.bin" in r.stderr
    assert "inference failed to start" in r.stderr
    assert "Traceback" not in r.stderr.split("last lines")[0]
    wait_for(lambda: not d.pid or not pid_alive(d.pid), 10, "the failed daemon to exit")
    assert shm_segments(f"reactor-{d.pid}-") == set()


def test_stalled_model_session_ends_with_a_reason(start_daemon) -> None:
    d = start_daemon({**SMALL, "model": {"module": "models:Stalls"},
                      "session": {"stall_timeout_s": 1.0}})
    with d.client() as c:
        c.start_session()
        wait_for(lambda: not d.snapshot().HasField("session"), 8, "the stalled session to end")
        assert any("stall_timeout_s" in line.message for line in c.status().logs)


def test_garbage_on_the_control_socket_is_dropped(start_daemon) -> None:
    d = start_daemon(SMALL)
    ctx = zmq.Context()
    try:
        for kind, payloads in (
            (zmq.DEALER, [[b"", os.urandom(64)], [b"", b"\x0a\xff\xff"], [os.urandom(10)],
                          [b"", b""], [b"a", b"b", b"c", b"d"]]),
            (zmq.REQ, [[os.urandom(200)]]),
        ):
            s = ctx.socket(kind)
            s.setsockopt(zmq.LINGER, 2000)  # delivered before close
            s.connect(RunDir(d.run_dir).endpoint("control"))
            for p in payloads:
                s.send_multipart(p)
            s.close()
        # Garbage on the workers' socket too, under a worker's name and under none.
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 2000)  # delivered before close
        s.setsockopt(zmq.IDENTITY, b"inference-imposter")
        s.connect(RunDir(d.run_dir).endpoint("workers"))
        s.send(os.urandom(100))
        s.close()
    finally:
        ctx.destroy(2000)
    log = d.run_dir / "logs" / "supervisor.log"
    wait_for(lambda: "dropped a malformed message" in log.read_text(), 10,
             "the supervisor to log the garbage it dropped")
    assert d.status()["state"] == "running"
    assert pid_alive(d.pid)


def test_send_out_of_range_names_field_and_rule(start_daemon) -> None:
    d = start_daemon(SMALL)
    r = d.cli("send", "set_speed", "speed=1000")
    assert r.returncode != 0
    assert "speed" in r.stderr and "less than or equal to 64" in r.stderr
    r = d.cli("send", "set_speed", "speed=8")
    assert r.returncode == 0, r.stderr
    r = d.cli("send", "set_text", "text=123")  # a string parameter keeps "123" a string
    assert r.returncode == 0, r.stderr
    r = d.cli("send", "no_such_command")
    assert r.returncode != 0 and "unknown command 'no_such_command'" in r.stderr


def test_no_daemon_is_a_clear_error(tmp_path: Path) -> None:
    for args in (["daemon", "status"], ["send", "set_speed", "speed=1"], ["daemon", "stop"]):
        r = run_cli(*args, "--run-dir", str(tmp_path / "none"))
        assert r.returncode == 1
        assert "no daemon is running" in r.stderr


def test_logs_and_restart_commands(start_daemon) -> None:
    d = start_daemon(SMALL)
    r = d.cli("daemon", "logs", "inference", "-n", "5")
    assert r.returncode == 0 and "ready" in r.stdout
    old = worker_pids(d)["egress"]
    assert d.cli("daemon", "restart", "egress").returncode == 0
    wait_for(lambda: d.worker("egress").pid not in (0, old)
             and d.worker("egress").state == tpb.WORKER_STATE_RUNNING, 5, "egress restart")
