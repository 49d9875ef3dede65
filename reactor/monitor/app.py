"""``reactor monitor``: watch the daemon's telemetry, live or once.

The supervisor publishes one ``Snapshot`` a few times a second on ``telemetry.sock`` (a PUB
socket). We subscribe, keep only the newest snapshot, and draw it with Rich's ``Live`` on
the alternate screen. Live's own thread refreshes the view four times a second; the view
reads the newest state when it is drawn, so the loop here only receives.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import sys
import termios
import threading
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from google.protobuf.message import DecodeError
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.live import Live
from rich.text import Text

from reactor.control.rundir import RunDir
from reactor.control.sockets import make_socket
from reactor.control.status import snapshot_to_dict
from reactor.monitor.render import dashboard, disconnected, plain_text
from reactor.proto.telemetry_pb2 import Snapshot

__all__ = ["MonitorView", "TelemetrySubscriber", "run_monitor"]

log = logging.getLogger(__name__)

#: How long ``--once`` and ``--json`` wait for a snapshot.
ONCE_WAIT_S = 5.0
#: Snapshots arrive a few times a second; this long without one means trouble.
STALE_AFTER_S = 2.0
#: This long without a snapshot is worth a look at the pidfile: a daemon that stopped
#: should not stay on screen as "running" for the whole of ``STALE_AFTER_S``.
MISSED_AFTER_S = 0.75
REFRESH_PER_SECOND = 4


class TelemetrySubscriber:
    """A SUB socket on ``<run_dir>/telemetry.sock`` that hands out the newest snapshot.

    Connecting needs no daemon: ZeroMQ retries an ``ipc://`` path that does not exist yet
    and reconnects by itself after the daemon restarts, so one subscriber lives as long as
    the monitor does.
    """

    def __init__(self, run_dir: Path) -> None:
        self.endpoint = RunDir(run_dir).endpoint("telemetry")
        self._ctx: zmq.Context[Any] = zmq.Context()
        self._sock: zmq.Socket[Any] = make_socket(self._ctx, zmq.SUB, hwm=16)
        # Reconnect quickly: the daemon may start after the monitor, or restart under it.
        self._sock.setsockopt(zmq.RECONNECT_IVL, 100)
        self._sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.connect(self.endpoint)

    def receive(self, timeout_s: float) -> Snapshot | None:
        """The newest snapshot that arrives within ``timeout_s``, or ``None``.

        Everything already queued is drained and only the last one kept (what
        ``ZMQ_CONFLATE`` would do), so a slow terminal never shows old telemetry.
        """
        if not self._sock.poll(max(0, int(timeout_s * 1000)), zmq.POLLIN):
            return None
        newest: Snapshot | None = None
        while True:
            try:
                frame = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return newest
            try:
                newest = Snapshot.FromString(frame)
            except DecodeError:
                # debug, not warning: a warning would print over the full-screen view.
                log.debug("dropped a malformed telemetry message (%d bytes)", len(frame))

    def wait(self, timeout_s: float) -> Snapshot | None:
        """The first snapshot within ``timeout_s``, or ``None``."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            snap = self.receive(left)
            if snap is not None:
                return snap
        return None

    def close(self) -> None:
        self._sock.close(linger=0)
        self._ctx.term()

    def __enter__(self) -> TelemetrySubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def daemon_pid(run_dir: Path) -> int | None:
    """The pid in ``<run_dir>/daemon.pid`` if that process is alive, else ``None``."""
    return RunDir(run_dir).live_pid()


def _no_daemon(run_dir: Path) -> str:
    return f"no daemon is running at {run_dir} (start one with `reactor daemon start`)"


def run_monitor(
    run_dir: Path, *, once: bool = False, as_json: bool = False, wait_s: float = ONCE_WAIT_S
) -> int:
    """Show the daemon at ``run_dir``: live until ``q`` or Ctrl+C, or one snapshot and exit.

    With ``once`` (text) or ``as_json``, or when stdout is not a terminal, wait up to
    ``wait_s`` for a snapshot, print it, and return 0; return 1 with a message on stderr when
    none arrives (at once when there is no daemon, not even a starting one).
    """
    # A full-screen view needs a terminal; piped into a file, show one snapshot instead.
    if not (once or as_json) and sys.stdout.isatty():
        with TelemetrySubscriber(run_dir) as sub:
            return _live(sub, run_dir)
    pid = daemon_pid(run_dir)
    snap = None
    # No live pidfile and no socket: nothing is starting either, so do not make the user wait.
    if pid is not None or (run_dir / "telemetry.sock").exists():
        with TelemetrySubscriber(run_dir) as sub:
            snap = sub.wait(wait_s)
    if snap is None:
        pid = daemon_pid(run_dir)
        if pid is None:
            print(f"reactor: {_no_daemon(run_dir)}", file=sys.stderr)
        else:
            print(f"reactor: the daemon at {run_dir} (pid {pid}) sent no telemetry within "
                  f"{wait_s:g} s; is it stuck? see `reactor daemon logs`", file=sys.stderr)
        return 1
    print(json.dumps(snapshot_to_dict(snap), indent=2) if as_json else plain_text(snap))
    return 0


@dataclass(frozen=True)
class _State:
    snap: Snapshot | None = None
    received_at: float = 0.0


class MonitorView:
    """What the live screen shows, sized to the terminal at the moment it is drawn.

    ``update`` swaps one immutable state object, so Live's refresh thread never sees a
    half-updated view and needs no lock.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._state = _State()

    def update(self, snap: Snapshot) -> None:
        self._state = _State(snap, time.monotonic())

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        state = self._state
        width, height = options.max_width, options.height or console.height
        if state.snap is None:
            yield disconnected(f"no daemon running at {self.run_dir}; waiting…")
            return
        age = time.monotonic() - state.received_at
        alive = age <= MISSED_AFTER_S or daemon_pid(self.run_dir) is not None
        if age <= STALE_AFTER_S and alive:
            yield dashboard(state.snap, width, height)
        elif not alive:
            yield disconnected(f"daemon at {self.run_dir} stopped; reconnecting…")
        else:
            # A hung daemon's last numbers are the best clue to why it hung: keep them.
            banner = Text(f" daemon not answering (no telemetry for {age:.0f} s); reconnecting… ",
                          style="bold white on red", no_wrap=True, overflow="ellipsis")
            yield Group(banner, dashboard(state.snap, width, height - 1))


def _live(sub: TelemetrySubscriber, run_dir: Path) -> int:
    view = MonitorView(run_dir)
    quit_event = threading.Event()
    try:
        with _keyboard(quit_event), Live(
            view, screen=True, refresh_per_second=REFRESH_PER_SECOND, redirect_stderr=False
        ):
            while not quit_event.is_set():
                snap = sub.receive(1 / REFRESH_PER_SECOND)
                if snap is not None:
                    view.update(snap)
    except KeyboardInterrupt:
        pass
    return 0


@contextlib.contextmanager
def _keyboard(quit_event: threading.Event) -> Iterator[None]:
    """Read keys in cbreak mode on a thread: ``q`` sets ``quit_event``.

    cbreak (not raw) keeps ISIG, so Ctrl+C still raises KeyboardInterrupt in the main
    thread. The terminal's settings are restored on the way out, whatever the way out is.
    """
    if not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    stop = threading.Event()

    def read_keys() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready and os.read(fd, 1) in (b"q", b"Q"):
                quit_event.set()
                return

    thread = threading.Thread(target=read_keys, name="monitor-keys", daemon=True)
    try:
        tty.setcbreak(fd)
        thread.start()
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=0.5)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
