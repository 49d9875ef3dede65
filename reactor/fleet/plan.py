"""A fleet's plan and record: its daemons (device, port, run directory, public URL) and
``fleet.json``, which every ``reactor fleet`` command reads."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from reactor.config import Config
from reactor.control.rundir import resolve_run_dir
from reactor.errors import ConfigError, DaemonError

FLEET_FILE = "fleet.json"


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


def free_port(host: str) -> int:
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
        p = free_port(host) if port == 0 else port + 1 + i
        if not 0 < p < 65536:
            raise ConfigError(f"--port {port}: daemon {i} would listen on port {p}, out of "
                              "range; choose a lower --port")
        members.append(Member(i, str(directory / f"daemon-{i}"), p, device,
                              f"{scheme}://{addr(public_host)}:{p}"))
    return members


def addr(host: str) -> str:
    """``host`` as it goes before ``:port`` (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def connect_host(bind_host: str) -> str:
    """Where HAProxy reaches a daemon bound to ``bind_host`` (a wildcard: loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind_host, bind_host)
