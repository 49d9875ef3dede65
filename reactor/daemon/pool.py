"""The worker pool: the supervisor's worker processes and their restart policy.

:class:`WorkerProcess` is one process: it spawns, is killed, has a state, frame rates
from its heartbeats and a CPU figure from ``/proc``. :class:`WorkerPool` holds one per
role and decides what a death means: a worker that never became ready, or a file run's
worker, is given up on at once (retrying would repeat the error, or wait for frames that
are gone); any other is restarted with exponential backoff until it dies
``supervisor.max_crashes`` times within ``supervisor.crash_window_s``. A worker whose
heartbeats stop is killed (its exit then takes the same path), and one that does not
become ready within ``model.load_timeout_s`` is given up on.

The pool starts processes through a ``spawn`` function and reads time from a ``clock``,
so the policy runs in a unit test with a fake clock and no processes.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from reactor.config import SupervisorSection
from reactor.proto import worker_pb2 as wpb
from reactor.runtime import stats as procstats

log = logging.getLogger(__name__)

HUNG_S = 10.0
BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
CPU_WINDOW_S = 1.0


class WorkerState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED = "stopped"
    FAILED = "failed"


class Process(Protocol):
    """What the pool needs of a started process (``multiprocess.Process`` has it)."""

    @property
    def pid(self) -> int | None: ...
    @property
    def sentinel(self) -> int: ...
    @property
    def exitcode(self) -> int | None: ...
    def is_alive(self) -> bool: ...
    def join(self, timeout: float | None = None) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


Spawn = Callable[[str], Process]  # start the named worker's process and return it


@dataclass
class WorkerProcess:
    """One worker process, as the supervisor sees it."""

    name: str
    process: Process | None = None
    state: WorkerState = WorkerState.STOPPED
    restarts: int = 0
    started_at: float = 0.0
    ready_at: float | None = None
    ever_ready: bool = False
    last_beat: float = 0.0
    stats: wpb.WorkerStats = field(default_factory=wpb.WorkerStats)
    ready: wpb.Ready = field(default_factory=wpb.Ready)
    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    last_error: str = ""
    # (time, frames_in, frames_out) samples for rates over about a second.
    # (time, frames in, frames out, audio samples in, audio samples out) per heartbeat.
    rate_samples: deque[tuple[float, int, int, int, int]] = field(
        default_factory=lambda: deque(maxlen=8))
    # (time, CPU seconds, last percent) for a CPU figure over CPU_WINDOW_S.
    _cpu: tuple[float, float, float] | None = None

    @property
    def pid(self) -> int:
        return int(self.process.pid) if self.process is not None and self.process.pid else 0

    @property
    def alive(self) -> bool:
        """Started and not known dead: its pid, CPU and memory mean something."""
        return self.process is not None and self.state in (WorkerState.STARTING,
                                                           WorkerState.RUNNING)

    def start(self, spawn: Spawn, now: float) -> None:
        self.process = spawn(self.name)
        self.state = WorkerState.STARTING
        self.started_at = now
        self.ready_at = None
        self.last_beat = now
        self.restart_at = None
        self.ready = wpb.Ready()
        self.rate_samples.clear()
        self._cpu = None
        log.info("spawn %s pid=%s", self.name, self.pid)

    def kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(2.0)

    def beat(self, stats: wpb.WorkerStats, now: float) -> None:
        self.last_beat = now
        self.stats = stats
        self.rate_samples.append((now, stats.frames_in, stats.frames_out,
                                  stats.audio_samples_in, stats.audio_samples_out))

    def rates(self, audio: bool = False) -> tuple[float, float]:
        """Frames (or, with ``audio``, audio samples) in and out per second over the last
        few heartbeats."""
        if len(self.rate_samples) < 2:
            return 0.0, 0.0
        first, last = self.rate_samples[0], self.rate_samples[-1]
        dt = last[0] - first[0]
        at = 3 if audio else 1
        if dt <= 0:
            return 0.0, 0.0
        return (last[at] - first[at]) / dt, (last[at + 1] - first[at + 1]) / dt

    def cpu_percent(self, now: float) -> float:
        """CPU % over the last second or so: /proc counts in 10 ms ticks, so a shorter
        window would flicker between multiples of 4 %."""
        prev = self._cpu
        if prev is not None and now - prev[0] < CPU_WINDOW_S:
            return prev[2]  # within the window: no /proc read
        total = procstats.cpu_seconds(self.pid)
        if total is None:
            return 0.0
        if prev is None:
            self._cpu = (now, total, 0.0)
            return 0.0
        t0, c0, _ = prev
        last = 100.0 * (total - c0) / (now - t0)
        self._cpu = (now, total, last)
        return last

    def rss_bytes(self) -> int:
        return procstats.rss_bytes(self.pid) if self.alive else 0


class Outcome(enum.Enum):
    RESTART = "restart"
    GIVE_UP = "give up"


@dataclass(frozen=True)
class Verdict:
    """What the pool decided about a worker: restart it after ``delay_s``, or give up
    (``why`` says why, for the daemon's error). ``cause`` is what ended the process, empty
    when it did not die (it never became ready in time)."""

    worker: WorkerProcess
    outcome: Outcome
    why: str
    cause: str = ""
    delay_s: float = 0.0


class WorkerPool:
    def __init__(
        self,
        names: tuple[str, ...],
        spawn: Spawn,
        limits: SupervisorSection,
        *,
        load_timeout_s: float,
        clock: Callable[[], float],
    ) -> None:
        self.workers = {name: WorkerProcess(name) for name in names}
        self._spawn = spawn
        self._limits = limits
        self._load_timeout_s = load_timeout_s
        self._clock = clock

    def __getitem__(self, name: str) -> WorkerProcess:
        return self.workers[name]

    def __iter__(self) -> Iterator[WorkerProcess]:
        return iter(self.workers.values())

    def start_all(self) -> None:
        for w in self:
            w.start(self._spawn, self._clock())

    def all_running(self) -> bool:
        return all(w.state == WorkerState.RUNNING for w in self)

    def sentinels(self) -> dict[int, str]:
        """The sentinel of every process that may still die, and its worker's name."""
        return {w.process.sentinel: w.name for w in self
                if w.process is not None and w.alive}

    def mark_ready(self, name: str, ready: wpb.Ready) -> WorkerProcess:
        w = self.workers[name]
        w.state = WorkerState.RUNNING
        w.ready_at = self._clock()
        w.ever_ready = True
        w.ready = ready
        log.info("ready %s pid=%d (%.2f s)", name, w.pid, w.ready_at - w.started_at)
        return w

    def on_exit(self, name: str, *, restartable: bool = True) -> Verdict:
        """The worker's process ended: restart it with backoff, or give up and say why."""
        w = self.workers[name]
        if w.process is not None:
            w.process.join(0.1)
        code = w.process.exitcode if w.process is not None else None
        why = w.last_error or f"exit code {code}"
        w.rate_samples.clear()  # a dead worker's fps is 0, not its last rate
        log.warning("%s (pid %d) died: %s", name, w.pid, why)
        if not restartable:
            return self._give_up(w, f"{name} died during the run: {why}", why)
        if not w.ever_ready:
            # A broken model or config, not bad luck: retrying would repeat the error.
            return self._give_up(w, f"{name} failed to start: {why}", why)
        now = self._clock()
        w.crashes.append(now)
        window = self._limits.crash_window_s
        while w.crashes and now - w.crashes[0] > window:
            w.crashes.popleft()
        if len(w.crashes) >= self._limits.max_crashes:
            return self._give_up(w, f"{name} crashed {len(w.crashes)} times in {window:g} s "
                                 f"(supervisor.max_crashes is {self._limits.max_crashes}); "
                                 f"last: {why}", why)
        delay = BACKOFF_S[min(len(w.crashes) - 1, len(BACKOFF_S) - 1)]
        w.state = WorkerState.RESTARTING
        w.restart_at = now + delay
        log.info("restart %s in %.1f s", name, delay)
        return Verdict(w, Outcome.RESTART, why, why, delay)

    def _give_up(self, w: WorkerProcess, why: str, cause: str = "") -> Verdict:
        w.state = WorkerState.FAILED
        w.last_error = why
        log.error("give up: %s", why)
        return Verdict(w, Outcome.GIVE_UP, why, cause)

    def tick(self) -> list[Verdict]:
        """Restart workers whose backoff is over, kill hung ones, and give up on one that
        did not become ready in time; the verdicts of the give-ups."""
        now = self._clock()
        out: list[Verdict] = []
        for w in self:
            due = w.restart_at is not None and now >= w.restart_at
            if w.state == WorkerState.RESTARTING and due:
                w.restarts += 1
                w.last_error = ""
                w.start(self._spawn, now)
            elif w.state == WorkerState.STARTING and now - w.started_at > self._load_timeout_s:
                w.kill()
                out.append(self._give_up(w, (
                    f"{w.name} did not become ready within {self._load_timeout_s:g} s "
                    "(raise model.load_timeout_s if loading takes longer)")))
            elif w.state == WorkerState.RUNNING and now - w.last_beat > HUNG_S:
                w.last_error = f"no heartbeat for {now - w.last_beat:.0f} s (hung)"
                log.error("%s: %s; killing it", w.name, w.last_error)
                w.kill()  # its sentinel fires next and on_exit takes over
        return out

    def restart(self, name: str) -> None:
        """Restart by request: a fresh crash window, and at once."""
        w = self.workers[name]
        w.last_error = "restarted by request"
        w.crashes.clear()
        if w.state == WorkerState.FAILED or w.process is None or not w.process.is_alive():
            w.restarts += 1
            w.start(self._spawn, self._clock())
            return
        w.kill()  # its exit restarts it after the first backoff step

    def stop_all(self, ask: Callable[[str], object], grace_s: float) -> None:
        """Ask every live worker to stop, wait up to ``grace_s``, then SIGTERM, then SIGKILL."""
        for w in self:
            if w.process is not None and w.process.is_alive():
                ask(w.name)
        deadline = self._clock() + grace_s
        for w in self:
            p = w.process
            if p is None:
                continue
            p.join(max(0.0, deadline - self._clock()))
            if p.is_alive():
                log.warning("stop: %s did not exit in %.0f s; terminating", w.name, grace_s)
                p.terminate()
                p.join(2.0)
            if p.is_alive():
                log.warning("stop: %s ignored SIGTERM; killing", w.name)
                p.kill()
                p.join(2.0)
            w.state = WorkerState.STOPPED
