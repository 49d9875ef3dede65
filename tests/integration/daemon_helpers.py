"""Helpers for tests against real daemons: start, query, wait, and check for leaks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactor.control.client import ControlClient
from reactor.control.rundir import pid_alive

HERE = Path(__file__).parent


def run_cli(*args: str, timeout: float = 60, check: bool = False,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "reactor.cli", *args], capture_output=True,
                       text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"reactor {' '.join(args)} failed ({r.returncode}):\n"
                             f"{r.stdout}\n{r.stderr}")
    return r


def shm_segments(tag: str = "reactor-") -> set[str]:
    return {p.name for p in Path("/dev/shm").iterdir() if p.name.startswith(tag)}


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout.split()
    return [int(p) for p in out]


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
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


@dataclass
class Daemon:
    run_dir: Path
    config_path: Path
    env: dict[str, str]
    pid: int = 0
    url: str = ""
    stopped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, timeout_s: float = 10.0) -> ControlClient:
        return ControlClient.connect(self.run_dir, timeout_s=timeout_s)

    def status(self) -> dict[str, Any]:
        r = run_cli("daemon", "status", "--json", "--run-dir", str(self.run_dir), env=self.env)
        return json.loads(r.stdout)  # type: ignore[no-any-return]

    def snapshot(self) -> Any:
        with self.client() as c:
            return c.status()

    def worker(self, name: str) -> Any:
        return next(w for w in self.snapshot().workers if w.name == name)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--run-dir", str(self.run_dir), timeout=timeout, env=self.env)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.pid and pid_alive(self.pid):
            run_cli("daemon", "stop", "--run-dir", str(self.run_dir), env=self.env, timeout=60)
        if self.pid and pid_alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)


