"""Starting and stopping a fleet: its daemons (in parallel), then HAProxy in front."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

from reactor.config import Config
from reactor.control.rundir import RunDir
from reactor.daemon.launcher import ready_timeout, spawn_daemon, stop_pid_in, wait_ready
from reactor.errors import ConfigError, DaemonError
from reactor.fleet.balancer import haproxy_binary, start_balancer
from reactor.fleet.plan import FLEET_FILE, Fleet, Member, addr, free_port, gpu_indexes, plan_members
from reactor.runtime.stats import alive


def start_fleet(cfg: Config, config_name: str, directory: Path, *, port: int | None,
                gpus: str | None, count: int | None, public_host: str | None) -> Fleet:
    """Start a fleet: its daemons (in parallel: each loads its model), then HAProxy in
    front. On a failure everything started is stopped again and a DaemonError says why."""
    haproxy = haproxy_binary()
    if cfg.server.tls_cert is not None:
        raise ConfigError("reactor fleet: server.tls_cert is set, but the fleet's balancer "
                          "serves plain HTTP; terminate TLS in front of it (see the docs' "
                          "Running many GPUs) and unset server.tls_cert and tls_key")
    if (gpus is None) == (count is None):
        raise ConfigError("reactor fleet start: give --gpus all|0,2,3 (one daemon per GPU) "
                          "or --count N (N daemons on this machine's CPU or its one device)")
    devices = ([f"cuda:{i}" for i in gpu_indexes(gpus)] if gpus is not None
               else [cfg.device] * _positive(count))
    _refuse_running(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    port = cfg.server.port if port is None else port
    host = cfg.server.host
    if port == 0:
        port = free_port(host)
    pub = public_host or (socket.getfqdn() if host in ("0.0.0.0", "::") else host)
    members = plan_members(cfg, directory, port=port, devices=devices, public_host=pub)
    fleet = Fleet(str(directory), config_name, f"http://{addr(pub)}:{port}", host, port,
                  tuple(members))
    fleet.save()
    try:
        procs = [(m, spawn_daemon(_member_config(cfg, m), RunDir(Path(m.run_dir))))
                 for m in members]
        for m, proc in procs:
            try:
                wait_ready(proc, RunDir(Path(m.run_dir)), ready_timeout(cfg))
            except DaemonError as e:
                raise DaemonError(f"daemon {m.index} ({m.device}, port {m.port}): {e}"
                                  ) from None
        fleet = start_balancer(fleet, haproxy)
    except BaseException:
        stop_fleet(directory, quiet=True)
        raise
    return fleet


def _member_config(cfg: Config, member: Member) -> Config:
    """``cfg`` for one daemon: its port, public URL and device."""
    data = cfg.model_dump()
    data["server"].update(port=member.port, public_url=member.public_url)
    data["device"] = member.device
    try:
        return Config.model_validate(data)
    except ValueError as e:
        raise ConfigError(f"daemon {member.index} of the fleet: {e}") from None


def _positive(count: int | None) -> int:
    if count is None or count < 1:
        raise ConfigError(f"--count {count}: give one daemon or more")
    return count


def _refuse_running(directory: Path) -> None:
    if not (directory / FLEET_FILE).exists():
        return
    fleet = Fleet.load(directory)
    live = [m.index for m in fleet.members if RunDir(Path(m.run_dir)).live_pid() is not None]
    if live or (fleet.haproxy_pid is not None and alive(fleet.haproxy_pid)):
        raise DaemonError(f"a fleet is already running in {directory}; stop it with "
                          "`reactor fleet stop`, or choose another --run-dir")


def stop_fleet(directory: Path, *, quiet: bool = False, timeout: float = 15.0) -> Fleet:
    """Stop HAProxy first (no new user lands on a stopping daemon), then every daemon."""
    fleet = Fleet.load(directory)
    if fleet.haproxy_pid is not None and alive(fleet.haproxy_pid):
        try:
            os.kill(fleet.haproxy_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5.0
        while alive(fleet.haproxy_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(fleet.haproxy_pid):
            os.kill(fleet.haproxy_pid, signal.SIGKILL)

    def stop(m: Member) -> None:
        rd = RunDir(Path(m.run_dir))
        pid = rd.live_pid()
        if pid is not None:
            stop_pid_in(rd, pid, timeout)

    threads = [threading.Thread(target=stop, args=(m,)) for m in fleet.members]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if not quiet:
        print(f"reactor fleet stopped: {len(fleet.members)} daemons and the balancer")
    return fleet
