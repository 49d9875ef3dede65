"""``reactor fleet``: one daemon per GPU on one machine, with HAProxy in front.

A live session holds its GPU for as long as it lasts, so a machine with N GPUs runs N
daemons, and a new user must land on one that is free. Placing users is left to a stock
balancer: ``reactor fleet start`` starts the daemons (each with its own ``device``,
port, run directory and ``server.public_url``), writes an HAProxy config that knows
them, and starts HAProxy on the one port users open. HAProxy checks each daemon's
``/readyz`` (503 while it is busy, loading or draining), sends a new offer to one that is
ready, and when a daemon answers 503 after all (two offers raced for its last place), it
retries the offer on another. The daemon's own answers carry the session's absolute URLs
(``public_url``), so everything after the offer goes straight to the daemon that holds
the session, not through the balancer.

The fleet's directory (``--run-dir``, default the daemon's run directory with ``-fleet``
after it) holds ``fleet.json`` (what was started), ``haproxy.cfg``, HAProxy's log and
stats socket, and one run directory per daemon (``daemon-0`` ...), each what ``reactor
daemon`` commands take as ``--run-dir``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reactor.config import Config
from reactor.control.client import ControlClient
from reactor.control.rundir import RunDir, resolve_run_dir
from reactor.control.status import daemon_state_name, session_state_name
from reactor.daemon.launcher import ready_timeout, spawn_daemon, stop_pid_in, wait_ready
from reactor.errors import ConfigError, DaemonError, ReactorError
from reactor.runtime.stats import alive

__all__ = ["FLEET_FILE", "Fleet", "Member", "fleet_dir", "fleet_status", "gpu_indexes",
           "haproxy_config", "plan_members", "start_fleet", "stop_fleet"]

FLEET_FILE = "fleet.json"
#: How often HAProxy asks each daemon's /readyz (a busy daemon is out of rotation within it).
CHECK_INTERVAL_MS = 1000
#: What HAProxy's own 503 (every daemon busy) tells a client to wait, seconds.
RETRY_AFTER_S = 5


def fleet_dir(explicit: str | None = None) -> Path:
    """The fleet's directory: ``explicit``, else the daemon's run directory + ``-fleet``."""
    if explicit:
        return Path(explicit).expanduser().absolute()
    base = resolve_run_dir()
    return base.with_name(base.name + "-fleet")


@dataclass(frozen=True)
class Member:
    """One daemon of the fleet."""

    index: int
    run_dir: str
    port: int
    device: str
    public_url: str
    #: Where the balancer reaches it; None: this machine, at the fleet's bind address.
    host: str | None = None


@dataclass(frozen=True)
class Fleet:
    """What ``fleet.json`` records of a started fleet."""

    directory: str
    config: str
    url: str  # where users go: the balancer
    bind_host: str
    port: int
    members: tuple[Member, ...]
    haproxy_pid: int | None = None

    @property
    def path(self) -> Path:
        return Path(self.directory)

    @property
    def haproxy_cfg(self) -> Path:
        return self.path / "haproxy.cfg"

    @property
    def stats_socket(self) -> Path:
        return self.path / "haproxy.sock"

    def save(self) -> None:
        data = asdict(self)
        tmp = self.path / (FLEET_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.path / FLEET_FILE)

    @classmethod
    def load(cls, directory: Path) -> Fleet:
        path = directory / FLEET_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DaemonError(f"no fleet was started with directory {directory} "
                              f"({path} is missing); start one with `reactor fleet start`"
                              ) from None
        except (OSError, ValueError) as e:
            raise DaemonError(f"{path} cannot be read ({e}); stop the fleet's processes "
                              "by hand and remove it") from None
        data["members"] = tuple(Member(**m) for m in data["members"])
        return cls(**data)


def gpu_indexes(spec: str) -> list[int]:
    """``--gpus``: ``all`` (every GPU ``nvidia-smi -L`` lists) or a list like ``0,2,3``."""
    if spec.strip() == "all":
        found = _visible_gpus()
        if not found:
            raise ConfigError("--gpus all: no NVIDIA GPU found (`nvidia-smi -L` lists none, "
                              "or nvidia-smi is not installed); on a machine without GPUs "
                              "use --count N")
        return found
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ConfigError(f"--gpus {spec!r}: {part!r} is not a GPU index; give `all` or "
                              "indexes like 0,2,3")
        if int(part) in out:
            raise ConfigError(f"--gpus {spec!r}: GPU {part} is named twice")
        out.append(int(part))
    return out


def _visible_gpus() -> list[int]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        text = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20,
                              check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [i for i, line in enumerate(ln for ln in text.splitlines() if ln.startswith("GPU "))]


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def plan_members(cfg: Config, directory: Path, *, port: int, devices: Sequence[str],
                 public_host: str) -> list[Member]:
    """The daemons of a fleet whose balancer listens on ``port``: daemon ``i`` on
    ``port + 1 + i`` (or a free port when ``port`` is 0), on device ``devices[i]``."""
    host = cfg.server.host
    scheme = cfg.server.scheme
    members = []
    for i, device in enumerate(devices):
        p = _free_port(host) if port == 0 else port + 1 + i
        if not 0 < p < 65536:
            raise ConfigError(f"--port {port}: daemon {i} would listen on port {p}, out of "
                              "range; choose a lower --port")
        members.append(Member(i, str(directory / f"daemon-{i}"), p, device,
                              f"{scheme}://{_addr(public_host)}:{p}"))
    return members


def _member_config(cfg: Config, member: Member) -> Config:
    """``cfg`` for one daemon: its port, public URL and device."""
    data = cfg.model_dump()
    data["server"].update(port=member.port, public_url=member.public_url)
    data["device"] = member.device
    try:
        return Config.model_validate(data)
    except ValueError as e:
        raise ConfigError(f"daemon {member.index} of the fleet: {e}") from None


def haproxy_config(fleet: Fleet) -> str:
    """HAProxy's config for ``fleet``: one HTTP frontend on the fleet's port; each daemon
    checked on ``/readyz`` every second (out of rotation at its first 503: busy, loading
    or draining); a request a daemon answers 503, or whose connection fails, is retried on
    another daemon (``retry-on`` with ``option redispatch``: the offer's body is buffered
    so it can be sent again); when every daemon is out, HAProxy's own 503 says
    ``Retry-After``."""
    bind = _addr(fleet.bind_host)
    tls = " ssl verify none" if fleet.url.startswith("https") else ""
    servers = "\n".join(
        f"    server daemon-{m.index} {_addr(m.host or _connect_host(fleet.bind_host))}:"
        f"{m.port} check{tls}" for m in fleet.members)
    return f"""\
# Written by `reactor fleet start` for {fleet.config}; rewritten at each start.
global
    log stdout format raw local0 info
    stats socket {fleet.stats_socket} mode 600 level user
    # A WHIP/WHEP offer must fit the buffer whole to be retried on another daemon.
    tune.bufsize 65536

defaults
    mode http
    log global
    option httplog
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    # A daemon that answers 503 (busy: another offer took its place first) or cannot be
    # reached: send the request to another one, up to three times.
    retries 3
    option redispatch 1
    retry-on 503 conn-failure empty-response
    option http-buffer-request

frontend reactor
    bind {bind}:{fleet.port}
    default_backend daemons
    # HAProxy's own 503 (every daemon busy or down) says when to try again, as a
    # daemon's does (RFC 9725 section 4.8).
    acl says_when res.hdr(Retry-After) -m found
    http-after-response set-header Retry-After {RETRY_AFTER_S} if {{ status 503 }} !says_when

backend daemons
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter {CHECK_INTERVAL_MS}ms fall 1 rise 1
{servers}
"""


def _addr(host: str) -> str:
    """``host`` as it goes before ``:port`` (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def _connect_host(bind_host: str) -> str:
    """Where HAProxy reaches a daemon bound to ``bind_host`` (a wildcard: loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind_host, bind_host)


def haproxy_binary() -> str:
    """The ``haproxy`` executable, or a ConfigError naming the package to install."""
    # Debian puts it in /usr/sbin, which a user's PATH often lacks.
    path = os.pathsep.join((os.environ.get("PATH", os.defpath), "/usr/sbin", "/usr/local/sbin"))
    found = shutil.which("haproxy", path=path)
    if found is None:
        raise ConfigError("reactor fleet needs HAProxy in front of the daemons, and `haproxy` "
                          "is not installed: `apt-get install haproxy` (Debian/Ubuntu) or "
                          "`dnf install haproxy`")
    return found


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
        port = _free_port(host)
    pub = public_host or (socket.getfqdn() if host in ("0.0.0.0", "::") else host)
    members = plan_members(cfg, directory, port=port, devices=devices, public_host=pub)
    fleet = Fleet(str(directory), config_name, f"http://{_addr(pub)}:{port}", host, port,
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


def start_balancer(fleet: Fleet, haproxy: str | None = None) -> Fleet:
    """Write ``fleet``'s HAProxy config, have HAProxy check it, start HAProxy (detached)
    and wait until it has seen every daemon ready; the fleet with its pid, saved."""
    haproxy = haproxy or haproxy_binary()
    fleet.path.mkdir(mode=0o700, parents=True, exist_ok=True)
    fleet.haproxy_cfg.write_text(haproxy_config(fleet))
    check = subprocess.run([haproxy, "-c", "-q", "-f", str(fleet.haproxy_cfg)],
                           capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise DaemonError(f"HAProxy refused {fleet.haproxy_cfg}: "
                          f"{(check.stderr or check.stdout).strip()}")
    fleet.stats_socket.unlink(missing_ok=True)
    with open(fleet.path / "haproxy.log", "ab") as log:
        proc = subprocess.Popen([haproxy, "-f", str(fleet.haproxy_cfg)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
    fleet = dataclasses.replace(fleet, haproxy_pid=proc.pid)
    fleet.save()
    _wait_balancer(fleet, proc)
    return fleet


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


def _wait_balancer(fleet: Fleet, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Until HAProxy listens and has seen every daemon ready once."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DaemonError(f"HAProxy exited (code {proc.returncode}); see "
                              f"{fleet.path / 'haproxy.log'}")
        states = balancer_states(fleet)
        if len(states) == len(fleet.members) and all(s == "UP" for s in states.values()):
            return
        time.sleep(0.1)
    raise DaemonError(f"HAProxy did not see every daemon ready within {timeout:.0f} s "
                      f"({states or 'no answer on its stats socket'}); see "
                      f"{fleet.path / 'haproxy.log'}")


def balancer_states(fleet: Fleet) -> dict[str, str]:
    """HAProxy's view of each daemon (``daemon-0``: ``UP``, ``DOWN`` ...), read from its
    stats socket; empty when HAProxy does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            s.connect(str(fleet.stats_socket))
            s.sendall(b"show stat\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
    except OSError:
        return {}
    lines = b"".join(chunks).decode(errors="replace").splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}
    header = lines[0][2:].split(",")
    out = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "daemons" and row.get("svname", "").startswith("daemon-"):
            out[row["svname"]] = row.get("status", "").split(" ")[0]
    return out


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
    import threading

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


def fleet_status(directory: Path) -> dict[str, Any]:
    """Every daemon's state, session, fps and readiness (its ``/readyz``, as HAProxy asks
    it), and HAProxy's view of each."""
    fleet = Fleet.load(directory)
    seen = balancer_states(fleet)
    balancer_up = fleet.haproxy_pid is not None and alive(fleet.haproxy_pid)
    rows = []
    for m in fleet.members:
        row: dict[str, Any] = {"index": m.index, "device": m.device, "url": m.public_url,
                               "run_dir": m.run_dir, "balancer": seen.get(f"daemon-{m.index}",
                                                                          "-")}
        rd = RunDir(Path(m.run_dir))
        pid = rd.live_pid()
        if pid is None:
            rows.append({**row, "pid": None, "state": "stopped", "session": None, "fps": None,
                         "viewers": 0, "ready": "stopped: not running"})
            continue
        try:
            with ControlClient(rd.path, timeout_s=2.0) as client:
                snap = client.status()
        except ReactorError as e:
            rows.append({**row, "pid": pid, "state": "unreachable", "session": None,
                         "fps": None, "viewers": 0, "ready": f"unreachable: {e}"})
            continue
        session, viewers = None, 0
        if snap.HasField("session"):
            session = {"id": snap.session.id,
                       "state": session_state_name(snap.session.state)}
            viewers = snap.session.viewers
        rows.append({**row, "pid": pid, "state": daemon_state_name(snap.state),
                     "session": session, "fps": round(snap.pipeline.fps_out, 1),
                     "viewers": viewers,
                     "ready": _readyz(m.host or _connect_host(fleet.bind_host), m.port)})
    return {"url": fleet.url, "config": fleet.config, "directory": fleet.directory,
            "balancer": {"pid": fleet.haproxy_pid, "running": balancer_up,
                         "config": str(fleet.haproxy_cfg)},
            "daemons": rows}


def _readyz(host: str, port: int) -> str:
    """``ready``, or the reason the daemon's ``/readyz`` gives for its 503."""
    import urllib.error
    import urllib.request

    url = f"http://{_addr(host)}:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        body = e.read()
    except OSError as e:
        return f"unreachable: {e}"
    try:
        answer = json.loads(body)
    except ValueError:
        return f"unreadable: {body[:80]!r}"
    return "ready" if answer.get("ready") else str(answer.get("reason", "not ready"))


def status_table(status: dict[str, Any]) -> Any:
    """The fleet as a rich table: one row per daemon."""
    from rich.table import Table

    bal = status["balancer"]
    title = (f"reactor fleet at {status['url']}: balancer "
             f"{'running (pid ' + str(bal['pid']) + ')' if bal['running'] else 'NOT running'}")
    table = Table(title=title, title_justify="left")
    for name in ("#", "device", "url", "state", "session", "viewers", "fps", "ready",
                 "balancer"):
        table.add_column(name, no_wrap=name == "url", overflow="fold")
    for r in status["daemons"]:
        s = r["session"]
        table.add_row(str(r["index"]), r["device"], r["url"], r["state"],
                      "-" if s is None else f"{s['id']} ({s['state']})", str(r["viewers"]),
                      "-" if r["fps"] is None else f"{r['fps']:.1f}", r["ready"],
                      r["balancer"])
    return table


def monitor_fleet(directory: Path, *, interval_s: float = 1.0) -> int:
    """``reactor monitor --fleet``: the status table, live, until Ctrl+C."""
    from rich.console import Console
    from rich.live import Live

    console = Console()
    try:
        with Live(status_table(fleet_status(directory)), console=console,
                  refresh_per_second=4) as live:
            while True:
                time.sleep(interval_s)
                live.update(status_table(fleet_status(directory)))
    except KeyboardInterrupt:
        return 0
