"""``reactor monitor`` against a real daemon: ``--once``, ``--json``, and the live view in tmux.

The live view is driven the way a user drives it: in a real terminal (a tmux pane of a fixed
size), read back with ``capture-pane`` and quit with a key press. Each test runs its own tmux
server on a private socket (``-L``), so it never touches a user's sessions and its teardown
can kill everything it started with one ``kill-server``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from reactor.control.rundir import RunDir
from reactor.runtime.stats import alive as pid_alive
from tests.support.daemon import Daemon, models_env, run_cli, shm_segments, wait_for

pytestmark = pytest.mark.timeout(120)

SMALL = {"video": {"width": 320, "height": 240, "fps": 30}}
WORKERS = ("ingress", "inference", "egress")
# One row of the workers table: name, state, pid, uptime ("42s", "1m 02s" or "-"), restarts.
ROW = re.compile(
    r"^(?P<name>ingress|inference|egress)\s+(?P<state>[a-z]+)\s+(?P<pid>\d+|-)\s+"
    r"(?P<uptime>\d+[smhd](?: \d+[smhd])?|-)\s+(?P<restarts>\d+)\s", re.MULTILINE)
FPS_OUT = re.compile(r"\bout (?P<fps>\d+(?:\.\d+)?) / (?P<target>\d+)")


@dataclass(frozen=True)
class Row:
    state: str
    pid: int
    restarts: int


def worker_rows(screen: str) -> dict[str, Row]:
    """The workers table as the user reads it off ``screen``."""
    return {
        m["name"]: Row(m["state"], 0 if m["pid"] == "-" else int(m["pid"]), int(m["restarts"]))
        for m in ROW.finditer(screen)
    }


def all_running(screen: str) -> dict[str, Row] | None:
    rows = worker_rows(screen)
    ok = list(rows) == list(WORKERS) and all(r.state == "running" and r.pid for r in rows.values())
    return rows if ok else None


def fps_out(screen: str) -> float:
    m = FPS_OUT.search(screen)
    return float(m["fps"]) if m else 0.0


def start_frames(d: Daemon) -> None:
    """Start a session (the test pattern needs no sender) and wait until frames come out."""
    with d.client() as c:
        c.start_session()
    wait_for(lambda: d.snapshot().pipeline.fps_out > 0, 15, "output fps above zero")


# --- --once and --json ---------------------------------------------------------------------


@pytest.mark.slow
def test_once_and_json_show_the_workers_and_the_frame_rate(start_daemon) -> None:
    d = start_daemon(SMALL)
    start_frames(d)
    pids = {w.name: w.pid for w in d.snapshot().workers}

    def once() -> str | None:
        r = d.cli("monitor", "--once")
        assert r.returncode == 0, r.stderr
        return r.stdout if fps_out(r.stdout) > 0 else None

    # What a user would see once the rates are up: the monitor's own frame rate above zero.
    text: str = wait_for(once, 15, "monitor --once to show the output frame rate")
    assert text.startswith("reactor ● running"), text
    rows = worker_rows(text)
    assert list(rows) == list(WORKERS), text
    for name, row in rows.items():
        assert row.state == "running", text
        assert row.pid == pids[name], text
        assert row.restarts == 0, text
    assert fps_out(text) > 0, text
    assert FPS_OUT.search(text)["target"] == "30"  # type: ignore[index]
    assert re.search(r"^session \w+  live ", text, re.MULTILINE), text
    assert max(len(line) for line in text.splitlines()) <= 100  # plain text is 100 wide

    r = d.cli("monitor", "--json")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["state"] == "running"
    assert status["pid"] == d.pid
    assert [(w["name"], w["state"], w["pid"]) for w in status["workers"]] == [
        (name, "running", pids[name]) for name in WORKERS]
    assert status["pipeline"]["fps_out"] > 0
    assert status["pipeline"]["target_fps"] == 30


def test_once_without_a_daemon_says_so_at_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "nothing-here"
    t0 = time.monotonic()
    r = run_cli("monitor", "--once", "--run-dir", str(run_dir))
    assert r.returncode == 1
    assert f"no daemon is running at {run_dir}" in r.stderr
    assert r.stdout == ""
    assert time.monotonic() - t0 < 5  # it did not wait out the telemetry timeout


# --- the live view, in a real terminal -----------------------------------------------------


class Tmux:
    """One private tmux server with one window, ``main``, whose pane stays after it exits."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"reactor-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.conf = tmp_path / "tmux.conf"
        # remain-on-exit from the config, so it is set before the pane's command can exit.
        self.conf.write_text("set -g remain-on-exit on\nset -g history-limit 1000\n")
        self.socket_path = ""

    def __call__(self, *args: str) -> str:
        r = subprocess.run(["tmux", "-L", self.socket, "-f", str(self.conf), *args],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def start(self, command: str, width: int = 100, height: int = 30) -> None:
        self("new-session", "-d", "-s", "main", "-x", str(width), "-y", str(height),
             "-c", str(Path.cwd()), command)
        self.socket_path = self("display-message", "-p", "#{socket_path}").strip()

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "main")

    def pane(self, fmt: str) -> str:
        return self("display-message", "-p", "-t", "main", fmt).strip()

    def wait_screen(self, pred: Callable[[str], object], timeout: float, what: str) -> str:
        """The first screen for which ``pred`` holds; on timeout, the error shows the screen."""
        seen = [""]

        def check() -> object:
            seen[0] = self.screen()
            return pred(seen[0])

        try:
            wait_for(check, timeout, what, interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- screen ---\n{seen[0]}") from None
        return seen[0]

    def kill(self) -> None:
        # Harmless when no server is running; tmux 3.3 leaves its socket file behind.
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=10)
        if self.socket_path:
            Path(self.socket_path).unlink(missing_ok=True)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not on PATH (apt-get install tmux): the live view needs a terminal")
    t = Tmux(tmp_path)
    try:
        yield t
    finally:
        t.kill()


def monitor_command(run_dir: Path) -> str:
    """The monitor, then what the terminal looks like after it: its exit status, its modes.

    ``modes shown`` marks the end of that report. The shell waits for a line before it exits,
    so the test can read the restored terminal (``alternate_on``, ``cursor_flag``) while the
    pane is still alive.
    """
    monitor = shlex.join([sys.executable, "-m", "reactor.cli", "monitor",
                          "--run-dir", str(run_dir)])
    script = (f"{monitor}; echo \"monitor exited with $?\"; "
              "stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo)'; "
              "echo 'modes shown'; read line")
    return shlex.join(["sh", "-c", script])


def quit_and_check_terminal(tmux: Tmux) -> None:
    """Press q: the monitor exits 0 and leaves the terminal as it found it."""
    tmux("send-keys", "-t", "main", "q")
    # Wait for the line after stty's: the screen may catch the exit status alone.
    screen = tmux.wait_screen(lambda s: "modes shown" in s, 10, "the monitor to exit")
    assert "monitor exited with 0" in screen, screen
    lines = screen.split()
    assert "icanon" in lines and "echo" in lines, screen  # cbreak mode was undone
    assert "worker" not in screen, screen  # the dashboard went with the alternate screen
    assert tmux.pane("#{alternate_on} #{cursor_flag}") == "0 1"  # normal screen, cursor shown
    tmux("send-keys", "-t", "main", "Enter")
    # Not #{pane_dead_status}: tmux 3.3 sometimes marks a pane dead on the pty's EOF and
    # never records the status. The monitor's own status was echoed above.
    wait_for(lambda: tmux.pane("#{pane_dead}") == "1", 10, "the pane's shell to exit")


@pytest.mark.slow
def test_live_view_shows_a_killed_worker_restart_and_quits_on_q(start_daemon, tmux) -> None:
    d = start_daemon(SMALL)
    start_frames(d)
    tmux.start(monitor_command(d.run_dir), 100, 30)

    screen = tmux.wait_screen(all_running, 15, "three running workers on screen")
    assert worker_rows(screen) == {w.name: Row("running", w.pid, 0) for w in d.snapshot().workers}
    screen = tmux.wait_screen(lambda s: fps_out(s) > 0, 10, "output fps on screen")
    assert "reactor ● running" in screen
    assert max(len(line) for line in screen.splitlines()) <= 100
    print(f"\n--- 100x30 ---\n{screen}")

    old = d.worker("egress").pid
    os.kill(old, signal.SIGKILL)
    states: set[str] = set()

    def restarted(s: str) -> bool:
        row = worker_rows(s).get("egress")
        if row is None:
            return False
        states.add(row.state)
        return row.state == "running" and row.pid not in (0, old) and row.restarts == 1

    screen = tmux.wait_screen(restarted, 10, "egress to restart on screen")
    assert not pid_alive(old)
    assert worker_rows(screen)["egress"].pid == d.worker("egress").pid
    others = {n: r for n, r in worker_rows(screen).items() if n != "egress"}
    assert all(r.state == "running" and r.restarts == 0 for r in others.values()), screen
    # The supervisor's own record of the death shows in the warnings and errors.
    tmux.wait_screen(lambda s: re.search(r"ERROR\s+egress\s+egress died", s), 5,
                     "the death in the log panel")
    print(f"egress states seen on screen during the restart: {sorted(states)}")

    # A smaller terminal: the dashboard redraws to fit it, nothing wraps or spills.
    tmux("resize-window", "-t", "main", "-x", "80", "-y", "24")
    screen = tmux.wait_screen(
        lambda s: all_running(s) and max(len(line) for line in s.splitlines()) <= 80
        and len(s.splitlines()) <= 24, 5, "the dashboard redrawn at 80x24")
    # The new egress starts its rate window afresh: frames flow again within a few seconds.
    screen = tmux.wait_screen(lambda s: fps_out(s) > 0, 10, "output fps again after the restart")
    assert max(len(line) for line in screen.splitlines()) <= 80, screen
    print(f"--- 80x24 ---\n{screen}")

    quit_and_check_terminal(tmux)


@pytest.mark.slow
def test_live_view_waits_for_a_daemon_then_shows_it(tmp_path: Path, tmux) -> None:
    # A run directory that does not exist yet, short enough not to wrap in the message box.
    run_dir = Path(f"/tmp/reactor-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    config = tmp_path / "reactor.yaml"
    config.write_text(yaml.safe_dump({"server": {"port": 0}, **SMALL}))
    env = models_env()
    d = Daemon(run_dir, config, env)

    tmux.start(monitor_command(run_dir), 100, 30)
    screen = tmux.wait_screen(lambda s: "waiting" in s, 10, "the monitor to wait")
    assert f"no daemon running at {run_dir}; waiting…" in screen, screen
    assert "press q to quit" in screen
    time.sleep(1)
    assert "waiting" in tmux.screen()  # still waiting, not exited
    assert tmux.pane("#{pane_dead}") == "0"

    try:
        r = run_cli("daemon", "start", "-c", str(config), "--run-dir", str(run_dir), env=env,
                    timeout=120)
        assert r.returncode == 0, f"daemon failed to start:\n{r.stdout}\n{r.stderr}"
        d.pid = RunDir(run_dir).read_pid() or 0
        screen = tmux.wait_screen(all_running, 15, "the dashboard once the daemon is up")
        assert f"reactor ● running  pid {d.pid} " in screen, screen
        assert "waiting" not in screen

        r = d.cli("daemon", "stop")
        assert r.returncode == 0, r.stderr
        d.stopped = True
        screen = tmux.wait_screen(lambda s: "stopped; reconnecting" in s, 10,
                                  "the monitor to notice the daemon stopped")
        assert f"daemon at {run_dir} stopped; reconnecting…" in screen, screen
    finally:
        d.stop()
        for seg in shm_segments(f"reactor-{d.pid}-") if d.pid else ():
            Path("/dev/shm", seg).unlink(missing_ok=True)
        shutil.rmtree(run_dir, ignore_errors=True)

    quit_and_check_terminal(tmux)
