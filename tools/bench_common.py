"""Shared helpers of ``tools/bench.py``: statistics, /proc sampling, daemons, inputs.

Everything a benchmark starts it also stops: :func:`daemon` stops its daemon with
``reactor daemon stop`` in ``finally`` (SIGKILL as the last resort) and removes its run
directory; :class:`ProcSampler` only reads ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as ``python tools/bench.py``: the shared test helpers
    sys.path.insert(0, str(ROOT))

from tests.support.daemon import Daemon, tree  # noqa: E402

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def percentiles_us(samples_ns: list[int], *qs: float) -> list[float | None]:
    """Percentiles in microseconds; ``None`` when a phase collected no samples."""
    if not samples_ns:
        return [None for _ in qs]
    arr = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    return [round(float(np.percentile(arr, q)), 1) for q in qs]


def percentiles_ms(samples_ms: list[float], *qs: float) -> list[float | None]:
    if not samples_ms:
        return [None for _ in qs]
    return [round(float(np.percentile(samples_ms, q)), 2) for q in qs]


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return None if a is None or not b else round(a / b, digits)


def slope_per_hour(ts: list[float], values: list[float]) -> float | None:
    """Least-squares slope of ``values`` over ``ts`` (seconds), per hour."""
    if len(ts) < 2 or max(ts) - min(ts) <= 0:
        return None
    return round(float(np.polyfit(np.asarray(ts), np.asarray(values, float), 1)[0]) * 3600, 1)


def machine() -> dict[str, Any]:
    """What the figures were measured on: cores, CPU model, load."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu_model": model,
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0]}


# -- /proc ------------------------------------------------------------------------------

def proc_sample(pid: int) -> tuple[float, int, int] | None:
    """(CPU seconds, RSS bytes, open fds) of ``pid``; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS
        rss = int(fields[21]) * _PAGE
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError, IndexError):
        return None
    return cpu, rss, fds


def proc_label(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
    if "resource_tracker" in cmd:
        return "resource_tracker"
    return "worker" if "spawn_main" in cmd else "main"


@dataclass
class ProcStats:
    label: str
    cpu0: float
    cpu: float = 0.0
    peak_rss: int = 0
    # (wall time, rss, fds, cpu seconds): wall time so that heartbeats' times compare
    samples: list[tuple[float, int, int, float]] = field(default_factory=list)

    def cpu_at(self, t: float) -> float:
        """CPU seconds at wall time ``t``, interpolated between samples."""
        ts = [s[0] for s in self.samples]
        return float(np.interp(t, ts, [s[3] for s in self.samples]))


class ProcSampler:
    """Samples a process tree's CPU, RSS and fds from /proc on a thread.

    ``names`` maps pids to readable names (worker names from the status snapshot); others
    get a label from their command line. CPU is counted from the first sample of each pid.
    """

    def __init__(self, roots: int | list[int], interval: float = 0.1) -> None:
        self.roots = [roots] if isinstance(roots, int) else list(roots)
        self.interval = interval
        self.procs: dict[int, ProcStats] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)

    def sample(self) -> None:
        now = time.time()
        for pid in (p for root in self.roots for p in tree(root)):
            s = proc_sample(pid)
            if s is None:
                continue
            cpu, rss, fds = s
            st = self.procs.get(pid)
            if st is None:
                st = self.procs[pid] = ProcStats(proc_label(pid), cpu)
            st.cpu = cpu
            st.peak_rss = max(st.peak_rss, rss)
            st.samples.append((now, rss, fds, cpu))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> ProcSampler:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def cpu_seconds(self) -> float:
        return sum(st.cpu - st.cpu0 for st in self.procs.values())

    def per_process(self) -> dict[str, ProcStats]:
        """Stats keyed by name (``name`` or ``label:pid``), workers restarted merged."""
        out: dict[str, ProcStats] = {}
        for pid, st in self.procs.items():
            out[self.names.get(pid) or f"{st.label}:{pid}"] = st
        return out


def cpu_total(pids: list[int]) -> float:
    return sum(s[0] for p in pids if (s := proc_sample(p)) is not None)


# -- daemons and runs ---------------------------------------------------------------------

def reactor_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "reactor.cli", *args]


def bench_config(model: str, width: int, height: int, fps: int = 30,
                 **extra: Any) -> dict[str, Any]:
    """A daemon config for ``model`` on a free loopback port, on the CPU; ``extra``
    sections are merged in."""
    cfg: dict[str, Any] = {
        "model": {"module": model}, "video": {"width": width, "height": height, "fps": fps},
        "device": "cpu", "server": {"host": "127.0.0.1", "port": 0, "max_viewers": 64},
    }
    for key, value in extra.items():
        cfg.setdefault(key, {}).update(value)
    return cfg


def write_config(path: Path, model: str, width: int, height: int, fps: int = 30,
                 **extra: Any) -> Path:
    path.write_text(yaml.safe_dump(bench_config(model, width, height, fps, **extra)))
    return path


@contextlib.contextmanager
def config_daemon(cfg: dict[str, Any], env: dict[str, str] | None = None,
                  ) -> Iterator[Daemon]:
    """A detached daemon of config ``cfg`` (``env``: its environment), always stopped
    and its run directory removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="reactor-bench-"))
    path = tmp / "reactor.yaml"
    path.write_text(yaml.safe_dump(cfg))
    d = Daemon(tmp / "run", path, env=env)
    try:
        r = d.start()
        if r.returncode != 0:
            raise RuntimeError(f"reactor daemon start failed:\n{r.stdout}\n{r.stderr}")
        d.url = d.url.rstrip("/")
        yield d
    finally:
        d.stop()
        d.remove_leftovers()
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def daemon(model: str, width: int = 1280, height: int = 720, fps: int = 30,
           **extra: Any) -> Iterator[Daemon]:
    """A detached daemon of ``model`` on a free loopback port, always stopped afterwards."""
    with config_daemon(bench_config(model, width, height, fps, **extra)) as d:
        yield d
