"""Starting and stopping the daemon from the CLI.

``reactor daemon start`` runs the supervisor detached (a new process session, so closing
the terminal does not stop it) and waits for its READY, printing the URL; ``--foreground``
runs it in this process. ``reactor daemon stop`` asks over the control socket and waits
for the pid to exit, with SIGTERM as the fallback. ``reactor daemon drain`` asks it to
drain (:mod:`reactor.daemon.drain`) and waits for it to stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from reactor.config import Config
from reactor.control.client import ControlClient
from reactor.control.rundir import RunDir, tail_lines
from reactor.control.status import daemon_state_name
from reactor.errors import ConfigError, DaemonError, ReactorError
from reactor.proto import telemetry_pb2 as tpb
from reactor.runtime.stats import alive

if TYPE_CHECKING:
    from reactor.daemon.plan import Plan
    from reactor.daemon.supervisor import Supervisor


def run_supervisor(
    config: Config,
    run_dir: str | Path,
    *,
    console: bool,
    plan: Plan | None = None,
    on_start: Callable[[Supervisor], None] | None = None,
) -> int:
    """Run the supervisor in this process until it stops; its exit code."""
    from reactor.daemon.supervisor import Supervisor
    from reactor.runtime.logs import setup_logging

    rd = RunDir(Path(run_dir))
    rd.path.mkdir(mode=0o700, parents=True, exist_ok=True)
    rd.logs.mkdir(mode=0o700, exist_ok=True)
    setup_logging(rd.log("supervisor"), "supervisor", level=config.log.level, console=console,
                  format=config.log.format)
    _log_config(config)
    _warn_public_bind(config)
    sup = Supervisor(config, rd.path, plan)
    if on_start is not None:
        on_start(sup)
    return sup.run()


def public_bind_warning(config: Config) -> str | None:
    """The warning for a daemon reachable beyond this machine without a token, or None."""
    if config.server.is_loopback or config.server.token or config.server.token_secret:
        return None
    return (f"SECURITY: server.host is {config.server.host} (not loopback) and server.token "
            "is not set: anyone who can reach this address can watch, send video and "
            "control the model. Set server.token, or bind 127.0.0.1.")


def check_port_range(config: Config) -> None:
    """Refuse a ``server.ice_port_range`` too small on this machine: each peer connection
    (``max_viewers`` viewers and a WHIP sender) binds one of its ports per address it
    gathers on, and how many addresses that is, only the machine that runs the daemon
    knows (the config's own check assumes one)."""
    server = config.server
    if server.ice_port_range is None or server.ice_transport_policy == "relay":
        return  # relay: no host candidate, so no port of the range is bound
    from reactor.config import ice_port_shortfall
    from reactor.media.ice import host_addresses, is_loopback_host

    problem = ice_port_shortfall(server.ice_port_range, server.max_viewers,
                                 host_addresses(is_loopback_host(server.host)),
                                 prefix="server.")
    if problem is not None:
        raise ConfigError(problem)


def _log_config(config: Config) -> None:
    """At debug level, the config the daemon really runs (file, defaults and command-line
    options merged), secrets masked: the first thing to read when a setting seems ignored."""
    import logging

    log = logging.getLogger("reactor.daemon")
    if not log.isEnabledFor(logging.DEBUG):
        return
    data = config.model_dump(mode="json")
    for secret in ("token", "token_secret"):
        if data["server"].get(secret):
            data["server"][secret] = "***"
    for server in data["server"].get("ice_servers") or ():
        if server.get("credential"):
            server["credential"] = "***"
    log.debug("config (log.level %s): %s", config.log.level, data)


def _warn_public_bind(config: Config) -> None:
    import logging

    text = public_bind_warning(config)
    if text:
        logging.getLogger("reactor.daemon").warning("%s", text)


def start_daemon(config: Config, run_dir: Path, *, foreground: bool) -> int:
    check_port_range(config)
    rd = RunDir(run_dir)
    pid = rd.live_pid()
    if pid is not None:
        raise DaemonError(
            f"a daemon (pid {pid}) is already running with run directory {rd.path}; "
            "stop it with `reactor daemon stop`, or choose another --run-dir"
        )
    if foreground:
        print(f"reactor: starting in the foreground (run dir {rd.path}); Ctrl+C stops",
              file=sys.stderr)
        return run_supervisor(config, rd.path, console=True)
    warning = public_bind_warning(config)
    if warning:
        print(f"reactor: {warning}", file=sys.stderr)
    proc = spawn_daemon(config, rd)
    snap = wait_ready(proc, rd, ready_timeout(config))
    print(f"reactor daemon running: {snap.url}")
    print(f"  model {snap.model}, pid {snap.pid}, run dir {rd.path}")
    print("  watch: open the URL; status: `reactor daemon status`; "
          "stop: `reactor daemon stop`")
    return 0


def ready_timeout(config: Config) -> float:
    """How long a detached daemon may take to become ready: its model's load, and more."""
    return config.model.load_timeout_s + 15.0


def spawn_daemon(config: Config, rd: RunDir) -> subprocess.Popen[bytes]:
    """Start a detached supervisor for ``config`` in run directory ``rd`` (its own process
    session: closing the terminal does not stop it); :func:`wait_ready` waits for it."""
    rd.path.mkdir(mode=0o700, parents=True, exist_ok=True)
    rd.logs.mkdir(mode=0o700, exist_ok=True)
    out = open(rd.log("supervisor.out"), "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reactor.daemon", "--run-dir", str(rd.path)],
        stdin=subprocess.PIPE, stdout=out, stderr=out, start_new_session=True,
        close_fds=True,
    )
    out.close()
    assert proc.stdin is not None
    proc.stdin.write(config.model_dump_json().encode())
    proc.stdin.close()
    return proc


def wait_ready(proc: subprocess.Popen[bytes], rd: RunDir, timeout: float) -> tpb.Snapshot:
    """The first snapshot of the daemon ``proc`` in ``rd`` once it runs; a DaemonError
    naming the cause when it exits, fails or is not ready within ``timeout`` (it is then
    stopped)."""
    deadline = time.monotonic() + timeout
    last_state = ""
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            lines = tail_lines(rd.log("supervisor"), 15) or tail_lines(
                rd.log("supervisor.out"), 15)
            raise DaemonError(
                f"the daemon exited during start-up (code {code}); last lines of "
                f"{rd.log('supervisor')}:\n" + "\n".join(lines)
            )
        if rd.live_pid() == proc.pid and rd.socket_path("control").exists():
            try:
                with ControlClient(rd.path, timeout_s=2.0) as client:
                    snap = client.status()
            except ReactorError:
                time.sleep(0.1)
                continue
            last_state = daemon_state_name(snap.state)
            if snap.state == tpb.DAEMON_STATE_RUNNING:
                return snap
            if snap.state == tpb.DAEMON_STATE_FAILED:
                _stop_pid(proc.pid, 10.0)
                raise DaemonError(f"the daemon failed to start: {snap.error}")
        time.sleep(0.1)
    _stop_pid(proc.pid, 10.0)
    raise DaemonError(
        f"the daemon was not ready within {timeout:.0f} s (state {last_state or 'unknown'}); "
        "raise model.load_timeout_s if the model takes longer to load; "
        f"see {rd.log('supervisor')}"
    )


def _stop_pid(pid: int, timeout: float) -> bool:
    """SIGTERM, wait, then SIGKILL; True once the process is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    print(f"reactor: the daemon (pid {pid}) ignored SIGTERM; killing it", file=sys.stderr)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return False


def stop_daemon(run_dir: Path, *, timeout: float = 15.0) -> int:
    rd = RunDir(run_dir)
    pid = rd.live_pid()
    if pid is None:
        raise DaemonError(f"no daemon is running at {rd.path}")
    stop_pid_in(rd, pid, timeout)
    print(f"reactor daemon stopped (pid {pid})")
    return 0


def stop_pid_in(rd: RunDir, pid: int, timeout: float) -> None:
    """Stop the daemon ``pid`` of ``rd``: asked over its control socket, SIGTERM and then
    SIGKILL when it does not go within ``timeout``."""
    try:
        with ControlClient(rd.path, timeout_s=3.0) as client:
            client.stop()
    except ReactorError:
        pass  # not answering: the signal below still stops it
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.05)
    if alive(pid):
        _stop_pid(pid, 5.0)


def drain_daemon(run_dir: Path, *, timeout_s: float | None = None, wait: bool = True) -> int:
    """Drain the daemon at ``run_dir``: no new session; it stops once the running one ends
    or ``timeout_s`` passes (``None``: ``session.drain_timeout_s``). With ``wait``, return
    when it has stopped (a Kubernetes preStop hook holds the pod until then)."""
    if timeout_s is not None and timeout_s < 0:
        raise ReactorError(f"drain: --timeout must be 0 or more seconds, found {timeout_s:g}")
    rd = RunDir(run_dir)
    pid = rd.live_pid()
    if pid is None:
        raise DaemonError(f"no daemon is running at {rd.path}")
    with ControlClient(rd.path, timeout_s=5.0) as client:
        snap = client.drain(timeout_s)
    d = snap.drain
    limit = f", {d.timeout_s:g} s at most" if d.HasField("timeout_s") else ""
    running = (f"session {snap.session.id} goes on until it ends{limit}"
               if snap.HasField("session") else "no session runs")
    print(f"reactor daemon draining (pid {pid}): no new sessions; {running}")
    if not wait:
        return 0
    while alive(pid):
        time.sleep(0.2)
    print(f"reactor daemon drained and stopped (pid {pid})")
    return 0


def run_foreground(config: Config, run_dir: Path) -> int:
    return start_daemon(config, run_dir, foreground=True)
