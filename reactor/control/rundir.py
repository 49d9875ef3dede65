"""The run directory: pidfile, sockets and logs of one daemon.

Default ``$XDG_RUNTIME_DIR/reactor``, else ``/tmp/reactor-$UID``; ``--run-dir`` or
``REACTOR_RUN_DIR`` override it. The directory is mode 0700, so the sockets in it — which
control the daemon — are reachable by its owner alone.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from reactor.errors import DaemonError
from reactor.runtime.stats import alive

PROCESSES = ("supervisor", "ingress", "inference", "egress")


def resolve_run_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The run directory: the flag, else ``REACTOR_RUN_DIR``, else the default."""
    if explicit:
        return Path(explicit).expanduser().absolute()
    env = os.environ.get("REACTOR_RUN_DIR")
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "reactor"
    return Path(f"/tmp/reactor-{os.getuid()}")


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    path: Path

    @property
    def pidfile(self) -> Path:
        return self.path / "daemon.pid"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def log(self, process: str) -> Path:
        return self.logs / f"{process}.log"

    def endpoint(self, name: str) -> str:
        """The ZeroMQ ``ipc://`` endpoint of socket ``name`` (control, telemetry, workers)."""
        return f"ipc://{self.path / (name + '.sock')}"

    def socket_path(self, name: str) -> Path:
        return self.path / f"{name}.sock"

    def read_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def live_pid(self) -> int | None:
        pid = self.read_pid()
        return pid if pid is not None and alive(pid) else None

    def claim(self) -> None:
        """Create the directory (0700) and write our pid; refuse a live daemon's directory.

        A stale directory (its pid is dead) is recovered: old sockets are removed.
        """
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = self.path.stat()
        if st.st_uid != os.getuid():
            raise DaemonError(
                f"run directory {self.path} belongs to another user (uid {st.st_uid})"
            )
        os.chmod(self.path, 0o700)
        self.logs.mkdir(mode=0o700, exist_ok=True)
        other = self.live_pid()
        if other is not None and other != os.getpid():
            raise DaemonError(
                f"a daemon (pid {other}) is already running with run directory {self.path}; "
                "stop it with `reactor daemon stop`, or choose another --run-dir"
            )
        for sock in self.path.glob("*.sock"):
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
        tmp = self.pidfile.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, self.pidfile)

    def protect_sockets(self) -> None:
        """Make the socket files owner-only (0600) too: the 0700 directory already keeps
        other users out, and this keeps them out should the directory's mode be loosened."""
        for sock in self.path.glob("*.sock"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(sock, 0o600)

    def release(self) -> None:
        """Remove the pidfile and sockets (the logs stay for post-mortems)."""
        if self.read_pid() == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.pidfile.unlink()
        for sock in self.path.glob("*.sock"):
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()


def tail_lines(path: Path, n: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return data.splitlines()[-n:] if n > 0 else []


def follow_logs(run_dir: Path, process: str | None, *, follow: bool, lines: int) -> int:
    """``reactor daemon logs``: print the last lines of one log or of all, and follow."""
    rd = RunDir(run_dir)
    names = [process] if process else list(PROCESSES)
    for name in names:
        if name not in PROCESSES:
            raise DaemonError(f"logs: unknown process {name!r}; one of {', '.join(PROCESSES)}")
    paths = [rd.log(n) for n in names]
    if not any(p.exists() for p in paths):
        raise DaemonError(f"no logs in {rd.logs} (has a daemon run with --run-dir {run_dir}?)")
    for name, p in zip(names, paths, strict=True):
        for line in tail_lines(p, lines):
            print(line if process else f"{name:>10} | {line}")
    if not follow:
        return 0
    offsets = {p: (p.stat().st_size if p.exists() else 0) for p in paths}
    try:
        while True:
            for name, p in zip(names, paths, strict=True):
                try:
                    size = p.stat().st_size
                except FileNotFoundError:
                    continue
                if size < offsets[p]:
                    offsets[p] = 0  # truncated or recreated
                if size > offsets[p]:
                    with open(p, "rb") as f:
                        f.seek(offsets[p])
                        chunk = f.read().decode("utf-8", "replace")
                    offsets[p] = size
                    for line in chunk.splitlines():
                        print(line if process else f"{name:>10} | {line}")
                    sys.stdout.flush()
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
