"""A real TURN server for tests: Debian's coturn, long-term credentials, on one address.

``turn_server(host, workdir)`` starts ``/usr/bin/turnserver`` listening and relaying on
``host`` only (127.0.0.1, or the outer end of a test's network namespace), waits until it
answers a STUN Binding request, and stops it when the block ends, even on failure. It
relays only to ``host`` itself (``--denied-peer-ip`` covers every address and
``--allowed-peer-ip`` lets ``host`` back in), so it never relays to this machine's other
interfaces even when a client offers candidates on them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TURNSERVER = Path("/usr/bin/turnserver")


@dataclass
class TurnServer:
    """A running coturn and what a client needs to use it."""

    host: str
    port: int
    username: str
    credential: str
    log_path: Path
    proc: subprocess.Popen[Any]

    def url(self, transport: str | None = None) -> str:
        """``turn:HOST:PORT``, with ``?transport=udp|tcp`` when given."""
        query = f"?transport={transport}" if transport else ""
        return f"turn:{self.host}:{self.port}{query}"

    def ice_server(self, transport: str | None = None) -> dict[str, str]:
        """The entry for ``server.ice_servers``."""
        return {"urls": self.url(transport), "username": self.username,
                "credential": self.credential}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def turn_server(host: str, workdir: Path, username: str = "reactor",
                credential: str = "turn-secret") -> Iterator[TurnServer]:
    """coturn listening and relaying on ``host`` only; raises FileNotFoundError without it."""
    if not TURNSERVER.exists():
        raise FileNotFoundError(f"{TURNSERVER} is missing (apt-get install coturn)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port(host)
    log_path = workdir / "turnserver.log"
    args = [str(TURNSERVER), "-n", "--no-cli", "--no-tls", "--no-dtls",
            "--listening-ip", host, "--relay-ip", host,
            "--listening-port", str(port), "--min-port", "40000", "--max-port", "40999",
            "--lt-cred-mech", "--user", f"{username}:{credential}", "--realm", "reactor.test",
            "--fingerprint", "--no-multicast-peers",
            "--denied-peer-ip=0.0.0.0-255.255.255.255", f"--allowed-peer-ip={host}",
            "--log-file", str(log_path), "--simple-log", "--no-stdout-log",
            "--pidfile", str(workdir / "turnserver.pid"), "--verbose"]
    if ipaddress.ip_address(host).is_loopback:
        args.append("--allow-loopback-peers")  # coturn refuses loopback peers otherwise
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    server = TurnServer(host, port, username, credential, log_path, proc)
    try:
        deadline = time.monotonic() + 15
        while not _stun_binding_ok(host, port):
            if proc.poll() is not None:
                raise AssertionError(f"turnserver exited ({proc.returncode}):\n"
                                     f"{proc.stderr.read() if proc.stderr else ''}\n"
                                     f"{server.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"turnserver did not answer STUN on {host}:{port}"
                                     f" in 15 s:\n{server.log()[-3000:]}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                print("turnserver ignored SIGTERM for 5 s; killing it")
                proc.kill()
                proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()


def _stun_binding_ok(host: str, port: int, timeout_s: float = 0.3) -> bool:
    """True when a STUN Binding request to host:port gets a success response."""
    txid = os.urandom(12)
    req = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + txid
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout_s)
        try:
            s.sendto(req, (host, port))
            data, _ = s.recvfrom(2048)
        except OSError:
            return False
    return len(data) >= 20 and data[:2] == b"\x01\x01" and data[8:20] == txid


def _free_port(host: str) -> int:
    # Free for both UDP and TCP on host (turnserver listens on both).
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port: int = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError(f"no free port on {host}")
