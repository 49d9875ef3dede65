"""Real daemons for tests and benches: start, query, wait, stop, and check for leaks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactor.control.client import ControlClient
from reactor.control.rundir import RunDir
from reactor.runtime.stats import alive as pid_alive

ROOT = Path(__file__).resolve().parents[2]
#: The folder of the test models (``models.py``): on a test daemon's PYTHONPATH.
MODELS_DIR = ROOT / "tests" / "integration"


def run_cli(*args: str, timeout: float = 60, check: bool = False,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``reactor ARGS...`` in a child Python, its output captured."""
    r = subprocess.run([sys.executable, "-m", "reactor.cli", *args], capture_output=True,
                       text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"reactor {' '.join(args)} failed ({r.returncode}):\n"
                             f"{r.stdout}\n{r.stderr}")
    return r


def models_env() -> dict[str, str]:
    """This process's environment with the test models importable (``models:Counter``)."""
    return {**os.environ,
            "PYTHONPATH": f"{MODELS_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def shm_segments(tag: str = "reactor-") -> set[str]:
    return {p.name for p in Path("/dev/shm").iterdir() if p.name.startswith(tag)}


def descendants(pid: int) -> list[int]:
    """The direct children of ``pid`` (from /proc/PID/task/*/children); [] once it is gone."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(p) for p in f.read().split())
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(descendants(p))
    return pids


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Call ``pred`` until it returns something true (returned) or ``timeout`` s pass
    (AssertionError naming ``what`` and the last value or exception)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except Exception as exc:  # transient while processes restart
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


async def wait_for_async(pred: Callable[[], Awaitable[Any]], timeout: float, what: str,
                         interval: float = 0.1) -> Any:
    """:func:`wait_for` for a coroutine condition, inside an event loop."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await pred()
        except Exception as exc:  # transient while processes restart
            last = exc
        else:
            if last:
                return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@dataclass
class Daemon:
    """A daemon started with ``reactor daemon start`` (detached) on ``run_dir``."""

    run_dir: Path
    config_path: Path
    env: dict[str, str] | None = None
    pid: int = 0
    url: str = ""
    stopped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, timeout_s: float = 10.0) -> ControlClient:
        return ControlClient.connect(self.run_dir, timeout_s=timeout_s)

    def status(self) -> dict[str, Any]:
        r = run_cli("daemon", "status", "--json", "--run-dir", str(self.run_dir), env=self.env)
        return json.loads(r.stdout)

    def snapshot(self) -> Any:
        with self.client() as c:
            return c.status()

    def worker(self, name: str) -> Any:
        return next(w for w in self.snapshot().workers if w.name == name)

    def worker_pids(self) -> dict[str, int]:
        """Each worker's pid, from a status snapshot over the control socket."""
        return {w.name: w.pid for w in self.snapshot().workers}

    def pids(self) -> list[int]:
        """The supervisor and every process under it."""
        return tree(self.pid)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--run-dir", str(self.run_dir), timeout=timeout, env=self.env)

    def start(self, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``reactor daemon start``; on success ``pid`` and ``url`` are filled. The pid is
        read even on failure, so that :meth:`stop` can clean up a half-started daemon."""
        r = run_cli("daemon", "start", "-c", str(self.config_path), "--run-dir",
                    str(self.run_dir), env=self.env, timeout=timeout)
        self.extra["start"] = r
        self.pid = RunDir(self.run_dir).read_pid() or 0
        if r.returncode == 0:
            self.url = self.status()["url"]
        return r

    def stop(self) -> None:
        """``reactor daemon stop``, then SIGKILL if the supervisor is still there."""
        if self.stopped:
            return
        self.stopped = True
        if self.pid and pid_alive(self.pid):
            run_cli("daemon", "stop", "--run-dir", str(self.run_dir), env=self.env, timeout=60)
        if self.pid and pid_alive(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def remove_leftovers(self) -> None:
        """Unlink the shared memory a killed daemon left behind."""
        for seg in shm_segments(f"reactor-{self.pid}-") if self.pid else ():
            Path("/dev/shm", seg).unlink(missing_ok=True)
