"""``run_monitor`` against a real ZeroMQ PUB socket standing in for the supervisor."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq
from rich.console import Console

from reactor.control.status import snapshot_to_dict
from reactor.monitor.app import MonitorView, TelemetrySubscriber, run_monitor
from reactor.monitor.render import plain_text
from reactor.proto.telemetry_pb2 import Snapshot

MakeSnapshot = Callable[..., Snapshot]


class Publisher:
    """The supervisor's side: a PUB socket on ``telemetry.sock`` sending every 50 ms."""

    def __init__(self, run_dir: Path, snap: Snapshot) -> None:
        self.endpoint = f"ipc://{run_dir / 'telemetry.sock'}"
        self.snap = snap
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.endpoint)
        try:
            while not self._stop.wait(0.05):
                sock.send(self.snap.SerializeToString())
        finally:
            sock.close()
            ctx.term()

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def publish(tmp_path: Path) -> Iterator[Callable[[Snapshot], Publisher]]:
    started: list[Publisher] = []

    def start(snap: Snapshot) -> Publisher:
        started.append(Publisher(tmp_path, snap).start())
        return started[-1]

    yield start
    for pub in started:
        pub.stop()


def test_once_prints_the_dashboard(
    tmp_path: Path, make_snapshot: MakeSnapshot, publish: Callable[[Snapshot], Publisher],
    capsys: pytest.CaptureFixture[str],
) -> None:
    snap = make_snapshot()
    publish(snap)
    assert run_monitor(tmp_path, once=True, wait_s=5) == 0
    assert capsys.readouterr().out == plain_text(snap) + "\n"


def test_json_prints_the_status_object(
    tmp_path: Path, make_snapshot: MakeSnapshot, publish: Callable[[Snapshot], Publisher],
    capsys: pytest.CaptureFixture[str],
) -> None:
    snap = make_snapshot()
    publish(snap)
    assert run_monitor(tmp_path, as_json=True, wait_s=5) == 0
    assert json.loads(capsys.readouterr().out) == snapshot_to_dict(snap)


def test_no_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    assert run_monitor(tmp_path, once=True) == 1
    assert time.monotonic() - started < 1.0  # nothing there, nothing starting: no wait
    assert capsys.readouterr().err == (
        f"reactor: no daemon is running at {tmp_path} (start one with `reactor daemon start`)\n"
    )


def test_a_daemon_that_sends_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "daemon.pid").write_text(f"{os.getpid()}\n")
    started = time.monotonic()
    assert run_monitor(tmp_path, as_json=True, wait_s=0.3) == 1
    assert 0.3 <= time.monotonic() - started < 2.0
    err = capsys.readouterr().err
    assert f"the daemon at {tmp_path} (pid {os.getpid()}) sent no telemetry within 0.3 s" in err


def test_subscriber_waits_for_a_daemon_and_follows_its_restart(
    tmp_path: Path, make_snapshot: MakeSnapshot, publish: Callable[[Snapshot], Publisher],
) -> None:
    with TelemetrySubscriber(tmp_path) as sub:
        assert sub.receive(0.2) is None  # the socket's path does not exist yet
        first = publish(make_snapshot())
        assert sub.wait(5) == make_snapshot()
        first.stop()
        (tmp_path / "telemetry.sock").unlink(missing_ok=True)
        while sub.receive(0.3) is not None:  # drain what was in flight
            pass
        restarted = make_snapshot()
        restarted.pid = 5151
        publish(restarted)
        got = sub.wait(5)
        assert got is not None and got.pid == 5151


def test_subscriber_keeps_only_the_newest(tmp_path: Path, make_snapshot: MakeSnapshot) -> None:
    with TelemetrySubscriber(tmp_path) as sub:
        ctx = zmq.Context()
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.bind(f"ipc://{tmp_path / 'telemetry.sock'}")
        try:
            while sub.receive(0.05) is None:  # until the subscription has arrived
                pub.send(Snapshot(uptime_s=-1).SerializeToString())
            for i in range(5):
                pub.send(Snapshot(uptime_s=i).SerializeToString())
            pub.send(b"\xff not protobuf")
            time.sleep(0.2)
            got = sub.receive(1)
            assert got is not None and got.uptime_s == 4
        finally:
            pub.close()
            ctx.term()


def _view_text(view: MonitorView, width: int = 80) -> str:
    console = Console(width=width, height=24, color_system=None, force_terminal=False)
    with console.capture() as capture:
        console.print(view)
    return capture.get()


def test_view_states(
    tmp_path: Path, make_snapshot: MakeSnapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = MonitorView(tmp_path)
    assert f"no daemon running at {tmp_path}; waiting…" in _view_text(view, width=200)

    view.update(make_snapshot())
    assert _view_text(view).startswith("reactor ● degraded  pid 4242")

    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 3)  # what reactor.monitor.app reads
    assert f"daemon at {tmp_path} stopped; reconnecting…" in _view_text(view, width=200)

    (tmp_path / "daemon.pid").write_text(str(os.getpid()))
    stale = _view_text(view)
    assert stale.startswith(" daemon not answering (no telemetry for 3 s); reconnecting…")
    assert "reactor ● degraded" in stale  # the last numbers stay on screen

    view.update(make_snapshot())
    assert _view_text(view).startswith("reactor ● degraded")


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


@pytest.mark.parametrize("key", [b"q", b"\x03"])
def test_live_mode_quits_on_q_or_ctrl_c_and_restores_the_terminal(
    tmp_path: Path, make_snapshot: MakeSnapshot, publish: Callable[[Snapshot], Publisher],
    key: bytes,
) -> None:
    publish(make_snapshot())
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    # Ctrl+C becomes SIGINT in the pty's line discipline only if the pty is the child's
    # controlling terminal: a new session, then TIOCSCTTY.
    code = (
        "import fcntl, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
        "from pathlib import Path; from reactor.monitor.app import run_monitor; "
        f"sys.exit(run_monitor(Path({str(tmp_path)!r})))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=slave, stdout=slave, stderr=slave,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"},
        start_new_session=True,
    )
    try:
        screen = _read_until(master, b"degraded", 10)
        assert b"\x1b[?1049h" in screen  # the alternate screen
        assert b"reactor" in screen and b"degraded" in screen
        os.write(master, key)
        assert proc.wait(timeout=10) == 0
        tail = _read_until(master, b"\x1b[?1049l", 2)
        assert b"\x1b[?1049l" in screen + tail  # back to the normal screen
        assert termios.tcgetattr(slave) == before  # echo and canonical mode are back
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
