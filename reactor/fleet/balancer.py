"""HAProxy in front of a fleet: the config ``reactor fleet`` writes, starting HAProxy, and
its view of each daemon (read from its stats socket)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import time

from reactor.errors import ConfigError, DaemonError
from reactor.fleet.plan import Fleet, addr, connect_host

#: How often HAProxy asks each daemon's /readyz (a busy daemon is out of rotation within it).
CHECK_INTERVAL_MS = 1000
#: What HAProxy's own 503 (every daemon busy) tells a client to wait, seconds.
RETRY_AFTER_S = 5


def haproxy_config(fleet: Fleet) -> str:
    """HAProxy's config for ``fleet``: one HTTP frontend on the fleet's port; each daemon
    checked on ``/readyz`` every second (out of rotation at its first 503: busy, loading
    or draining); a request a daemon answers 503, or whose connection fails, is retried on
    another daemon (``retry-on`` with ``option redispatch``: the offer's body is buffered
    so it can be sent again); when every daemon is out, HAProxy's own 503 says
    ``Retry-After``."""
    bind = addr(fleet.bind_host)
    tls = " ssl verify none" if fleet.url.startswith("https") else ""
    servers = "\n".join(
        f"    server daemon-{m.index} {addr(m.host or connect_host(fleet.bind_host))}:"
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


def backend_stats(fleet: Fleet) -> dict[str, dict[str, str]]:
    """HAProxy's ``show stat`` rows of the daemons' backend, by name (``daemon-0`` ...,
    and ``BACKEND`` for the whole), read from its stats socket: ``status`` (UP, DOWN ...),
    ``wretr`` and ``wredis`` (requests retried, and sent to another daemon), and the
    rest HAProxy documents. Empty when HAProxy does not answer."""
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
    rows = (dict(zip(header, line.split(","), strict=False)) for line in lines[1:])
    return {row["svname"]: row for row in rows if row.get("pxname") == "daemons"}


def balancer_states(fleet: Fleet) -> dict[str, str]:
    """HAProxy's view of each daemon (``daemon-0``: ``UP``, ``DOWN`` ...); empty when
    HAProxy does not answer."""
    return {name: row.get("status", "").split(" ")[0]
            for name, row in backend_stats(fleet).items() if name.startswith("daemon-")}
