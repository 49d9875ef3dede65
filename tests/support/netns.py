"""A second machine on this one: a network namespace joined to ours by a veth pair.

The remote tests run the daemon inside a namespace (the "GPU box") and the clients outside
(the "laptops")::

    with netns() as ns:                       # 198.18.x.1 outside, 198.18.x.2 inside
        with RemoteDaemon(ns, config, tmp) as d:
            ...  # clients use d.url (http://198.18.x.2:PORT) and d.token

Addresses come from 198.18.0.0/15 (RFC 2544's benchmarking range), one /30 per namespace,
chosen so that no address on this machine is reused. The namespace has no route but its
own /30, so nothing run inside it can send anywhere but to the outer end of the veth; the
tests outside talk only to the inner address and to loopback.

Everything made here is removed when the ``with`` block ends, however it ends (an
exception, a failed assertion, KeyboardInterrupt): every process still inside the
namespace is killed, the namespace and the veth pair are deleted. A namespace left behind
by a test run that was killed outright (SIGKILL) is named ``reactor-<pid>-<n>``; the next
run removes those whose pid is gone.

Making namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2's ``ip``;
without them :class:`NetnsUnavailable` says which is missing, and the fixtures skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from reactor.runtime.stats import alive as pid_alive
from tests.support.daemon import models_env

IP = shutil.which("ip") or "/usr/sbin/ip"
BENCH_NET = ipaddress.IPv4Network("198.18.0.0/15")
NAME_RE = re.compile(r"^reactor-(\d+)-(\d+)$")
LOCK_PATH = Path("/tmp/reactor-netns.lock")
_counter = itertools.count()


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be made here; the message says why."""


def _ip(*args: str, check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([IP, *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def _netns_names() -> list[str]:
    r = _ip("netns", "list", check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def _used_addresses() -> set[ipaddress.IPv4Address]:
    r = _ip("-4", "-o", "addr", "show", check=False)
    out = set()
    for m in re.finditer(r"inet (\d+\.\d+\.\d+\.\d+)/", r.stdout):
        out.add(ipaddress.IPv4Address(m.group(1)))
    return out


def check_available() -> None:
    """Raise :class:`NetnsUnavailable` unless this process can make namespaces."""
    if os.geteuid() != 0:
        raise NetnsUnavailable(f"network namespaces need root (running as uid {os.geteuid()})")
    if not Path(IP).exists():
        raise NetnsUnavailable("iproute2's `ip` is missing (apt-get install iproute2)")


def _kill_all(pids: Sequence[int], grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL whatever is left after ``grace_s``."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if pid_alive(pid):
            print(f"netns: pid {pid} ignored SIGTERM for {grace_s} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _ns_pids(name: str) -> list[int]:
    r = _ip("netns", "pids", name, check=False)
    return [int(p) for p in r.stdout.split() if p.isdigit() and int(p) != os.getpid()]


def _delete(name: str, outer_if: str | None) -> None:
    _kill_all(_ns_pids(name))
    _ip("netns", "del", name, check=False)
    # Deleting the namespace destroys the inner end, and with it the outer end, but only
    # asynchronously: delete the outer end too and wait until it is gone.
    if outer_if:
        _ip("link", "del", outer_if, check=False)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _ip("link", "show", outer_if,
                                                  check=False).returncode == 0:
            time.sleep(0.05)


def remove_stale() -> list[str]:
    """Delete ``reactor-<pid>-<n>`` namespaces whose test run (pid) no longer exists."""
    removed = []
    for name in _netns_names():
        m = NAME_RE.match(name)
        if m and not pid_alive(int(m.group(1))):
            _delete(name, f"rx{m.group(1)}o{m.group(2)}")
            removed.append(name)
    return removed


@dataclass
class Netns:
    """One namespace: ``inner_ip`` is the remote machine, ``outer_ip`` our end of the link."""

    name: str
    outer_if: str
    inner_if: str
    outer_ip: str
    inner_ip: str
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def exec_args(self, *args: str) -> list[str]:
        """``args`` as a command line that runs inside the namespace."""
        return [IP, "netns", "exec", self.name, *args]

    def run(self, *args: str, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it."""
        return subprocess.run(self.exec_args(*args), capture_output=True, text=True,
                              timeout=timeout, env=env)

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a command inside the namespace; it is killed when the namespace goes."""
        proc = subprocess.Popen(self.exec_args(*args), **kwargs)
        self.procs.append(proc)
        return proc

    def pids(self) -> list[int]:
        """Every process running inside the namespace now."""
        return _ns_pids(self.name)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        _delete(self.name, self.outer_if)


def _free_subnet() -> ipaddress.IPv4Network:
    used = _used_addresses()
    # Start from a place that depends on the pid, so parallel runs rarely even collide
    # before the lock-protected check below.
    subnets: list[ipaddress.IPv4Network] = list(BENCH_NET.subnets(new_prefix=30))
    start = (os.getpid() * 37) % len(subnets)
    for i in range(len(subnets)):
        net = subnets[(start + i) % len(subnets)]
        if not any(a in net for a in used):
            return net
    raise RuntimeError("no free /30 left in 198.18.0.0/15")


@contextlib.contextmanager
def netns(*, lan: bool = False) -> Iterator[Netns]:
    """A fresh namespace joined to ours by a veth pair; removed when the block ends.

    ``lan``: it also routes the rest of 198.18.0.0/15 through our end, as a box on a lab
    network reaches the other subnets through its gateway: several namespaces then act as
    boxes on one network, and a client on this machine whose packets leave by another
    box's link (a browser that gathers on one interface only: Firefox without camera
    permission) still gets answers. Nothing outside the range is routed."""
    check_available()
    remove_stale()
    n = next(_counter)
    name = f"reactor-{os.getpid()}-{n}"
    # IFNAMSIZ allows 15 characters: "rx" + a pid of at most 7 digits + "o" + n.
    outer_if, inner_if = f"rx{os.getpid()}o{n}", f"rx{os.getpid()}i{n}"
    made = False
    ns: Netns | None = None
    try:
        LOCK_PATH.touch(exist_ok=True)
        with open(LOCK_PATH) as lock:
            # Two runs must not pick the same /30 between looking and taking it.
            fcntl.flock(lock, fcntl.LOCK_EX)
            r = _ip("netns", "add", name, check=False)
            if r.returncode != 0:
                raise NetnsUnavailable(f"`ip netns add {name}` failed: {r.stderr.strip()}")
            made = True
            subnet = _free_subnet()
            outer_ip, inner_ip = str(subnet[1]), str(subnet[2])
            ns = Netns(name, outer_if, inner_if, outer_ip, inner_ip)
            _ip("link", "add", outer_if, "type", "veth", "peer", "name", inner_if)
            _ip("link", "set", inner_if, "netns", name)
            _ip("addr", "add", f"{outer_ip}/30", "dev", outer_if)
            _ip("link", "set", outer_if, "up")
        _ip("-n", name, "addr", "add", f"{inner_ip}/30", "dev", inner_if)
        _ip("-n", name, "link", "set", inner_if, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        if lan:
            _ip("-n", name, "route", "add", str(BENCH_NET), "via", ns.outer_ip)
        yield ns
    finally:
        if ns is not None:
            ns.close()
        elif made:
            _delete(name, outer_if)


# --- the daemon inside --------------------------------------------------------------------

class RemoteDaemon:
    """``reactor daemon start`` run inside ``ns``, bound to its address, with a token.

    A context manager: the daemon is stopped (and anything left of it killed) on exit."""

    def __init__(self, ns: Netns, config: dict[str, Any], workdir: Path,
                 token: str = "remote-test-token") -> None:
        self.ns = ns
        self.token = token
        cfg = dict(config)
        cfg["server"] = {"host": ns.inner_ip, "port": 0, "token": token,
                         **cfg.get("server", {})}
        self.config = cfg
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "reactor.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg))
        # Short: ipc:// socket paths inside it have a length limit.
        self.run_dir = Path(f"/tmp/{ns.name}-d{next(_counter)}")
        self.env = models_env()
        self.url = ""
        self.pid = 0

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.ns.run(sys.executable, "-m", "reactor.cli", *args,
                           "--run-dir", str(self.run_dir), timeout=timeout, env=self.env)

    def start(self) -> RemoteDaemon:
        r = self.ns.run(sys.executable, "-m", "reactor.cli", "daemon", "start",
                        "-c", str(self.config_path), "--run-dir", str(self.run_dir),
                        timeout=150, env=self.env)
        if r.returncode != 0:
            raise AssertionError(f"daemon in {self.ns.name} failed to start:\n{r.stdout}\n"
                                 f"{r.stderr}\n{self.logs()}")
        self.start_output = r.stdout + r.stderr
        st = json.loads(self.cli("daemon", "status", "--json").stdout)
        self.url = st["url"]
        pid_file = self.run_dir / "daemon.pid"
        self.pid = int(pid_file.read_text().strip()) if pid_file.exists() else 0
        return self

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.cli("daemon", "status", "--json").stdout)
        return result

    def logs(self, tail: int = 4000) -> str:
        out = []
        for log in sorted((self.run_dir / "logs").glob("*.log")):
            out.append(f"--- {log.name}\n{log.read_text(errors='replace')[-tail:]}")
        return "\n".join(out)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.cli("daemon", "stop", timeout=60)
        if self.pid and pid_alive(self.pid):
            _kill_all([self.pid])
        for seg in Path("/dev/shm").glob(f"reactor-{self.pid}-*") if self.pid else ():
            seg.unlink(missing_ok=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> RemoteDaemon:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# --- a certificate for the inner address --------------------------------------------------


def make_certificate(ip: str, workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate (and its key) for ``ip`` (subjectAltName IP:ip)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"reactor test {ip}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    workdir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = workdir / "cert.pem", workdir / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path
