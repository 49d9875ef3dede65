"""The daemon's life cycle: its state, decided in one place from what happened.

:class:`Lifecycle` is a pure state machine: it reads no clock (it is told when it started, for
its uptime), touches no socket or process, and answers every event with a :class:`Transition` —
the state it is in now and the :data:`Action` values the supervisor carries out (announce
a worker event to clients, start or end a file run's session, stop). The supervisor is
the shell around it: it turns what its loop sees (a READY, a pool verdict, a finished file
run, a stop) into events and performs the actions, so every rule below runs in a unit
test with a fake clock.

The states::

    STARTING --all workers ready--> RUNNING --a worker restarts--> DEGRADED
        |                            ^   |                             |
        |                            |   +--all ready again------------+
        +--a worker given up on--> FAILED (from any state but STOPPING)
    any --the supervisor shuts down--> STOPPING (final)

A failed daemon becomes RUNNING again when every worker is ready (``reactor daemon
restart-worker`` restarts a failed one). An event that does not apply in the current
state (a READY after the shutdown began, a second stop) changes nothing: its transition
says why it was ignored. Those arrive for real — a worker's last message can cross the
supervisor's stop — so they are not errors.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from reactor.daemon.pool import WorkerState


class DaemonState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    STOPPING = "stopping"
    FAILED = "failed"


# --- events: what the supervisor saw ----------------------------------------------------


@dataclass(frozen=True)
class WorkerReady:
    """A worker sent its READY; ``restarts`` counts its earlier incarnations."""

    worker: str
    pid: int
    restarts: int


@dataclass(frozen=True)
class AllReady:
    """Every worker of the plan is running. ``session_open``: a session exists already
    (a file run starts its one session here, once)."""

    session_open: bool = False


@dataclass(frozen=True)
class WorkerRestarting:
    """The pool will restart a worker that died of ``cause`` after ``delay_s``."""

    worker: str
    pid: int
    cause: str
    delay_s: float


@dataclass(frozen=True)
class WorkerGaveUp:
    """The pool gave up on a worker: it died too often, during a file run or before it was
    ever ready, or it did not become ready within ``model.load_timeout_s``. ``why`` is the
    pool's sentence; ``log_tail`` the last lines of the worker's log at ``log_path``."""

    worker: str
    why: str
    log_path: str = ""
    log_tail: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunComplete:
    """A file run accounted for every frame (:func:`reactor.daemon.completion.run_complete`)."""


@dataclass(frozen=True)
class SessionClosed:
    """No session is open any more (after :class:`RunComplete`, the file run's end)."""


@dataclass(frozen=True)
class StopRequested:
    """Someone asked the daemon to stop (``reactor daemon stop``, a signal, a file run)."""

    why: str


@dataclass(frozen=True)
class ShuttingDown:
    """The supervisor's loop has ended; it stops the workers now."""


Event = (WorkerReady | AllReady | WorkerRestarting | WorkerGaveUp | RunComplete
         | SessionClosed | StopRequested | ShuttingDown)


# --- actions: what the supervisor carries out -------------------------------------------


@dataclass(frozen=True)
class Announce:
    """Tell clients about a worker (a ``worker`` session event): ``state`` (as its
    value) and ``data`` go in its JSON, ``reason`` says it in words."""

    worker: str
    state: WorkerState
    reason: str
    data: tuple[tuple[str, int | float], ...] = ()


@dataclass(frozen=True)
class FreezeGc:
    """The daemon is ready for the first time: freeze what start-up allocated."""


@dataclass(frozen=True)
class LogReady:
    """Every worker is running again (or for the first time): log the ``ready`` line."""


@dataclass(frozen=True)
class StartSession:
    """A file run's one session starts."""


@dataclass(frozen=True)
class EndSession:
    """End the session (a file run's input ended)."""

    reason: str
    cause: str


@dataclass(frozen=True)
class Stop:
    """End the supervisor's loop."""

    why: str


Action = Announce | FreezeGc | LogReady | StartSession | EndSession | Stop


@dataclass(frozen=True)
class Transition:
    """The state after an event, the actions to carry out in order, and, for an event that
    did not apply, why it was ignored (the state is then unchanged and there are none)."""

    state: DaemonState
    actions: tuple[Action, ...] = ()
    ignored: str = ""


class Lifecycle:
    """The daemon's state and the rules that change it (see the module's docstring).

    ``headless``: a file run (``reactor run``), which starts its one session when ready,
    ends when the input is done, never restarts a worker mid-run and stops when given up
    on (nobody is there to read a failed state). ``now`` is the supervisor's clock
    (``time.monotonic()``) when it starts: :meth:`uptime` counts from it.
    """

    def __init__(self, *, headless: bool, now: float) -> None:
        self.headless = headless
        self.state = DaemonState.STARTING
        #: Why the daemon failed (the pool's verdict and the worker's last log lines);
        #: empty unless FAILED.
        self.error = ""
        self.started_at = now
        #: A file run has accounted for every frame.
        self.done = False
        #: The loop should end: a stop was asked for, or a file run is over.
        self.stop_requested = False

    def uptime(self, now: float) -> float:
        return now - self.started_at

    @property
    def restartable(self) -> bool:
        """Whether a dead worker may be restarted: not during a file run (its frames are
        gone with it), only after the run is done."""
        return not (self.headless and not self.done)

    @property
    def awaiting_completion(self) -> bool:
        """A file run is under way and running: whether it is complete is worth asking."""
        return self.headless and not self.done and self.state is DaemonState.RUNNING

    def on(self, event: Event) -> Transition:
        """Apply ``event`` and say what follows."""
        if self.state is DaemonState.STOPPING:
            return self._ignore(f"{type(event).__name__} after the shutdown began")
        match event:
            case WorkerReady():
                return self._worker_ready(event)
            case AllReady():
                return self._all_ready(event)
            case WorkerRestarting():
                return self._restarting(event)
            case WorkerGaveUp():
                return self._gave_up(event)
            case RunComplete():
                return self._run_complete()
            case SessionClosed():
                return self._session_closed()
            case StopRequested():
                return self._stop_requested(event)
            case ShuttingDown():
                self.state = DaemonState.STOPPING
                return Transition(self.state)

    # --- the rules ------------------------------------------------------------------------

    def _worker_ready(self, ev: WorkerReady) -> Transition:
        if not ev.restarts:
            return Transition(self.state)
        return Transition(self.state, (Announce(
            ev.worker, WorkerState.RUNNING, f"{ev.worker} restarted (pid {ev.pid})",
            (("pid", ev.pid), ("restarts", ev.restarts))),))

    def _all_ready(self, ev: AllReady) -> Transition:
        actions: list[Action] = []
        if self.state is DaemonState.STARTING:
            actions.append(FreezeGc())
        if self.state in (DaemonState.STARTING, DaemonState.DEGRADED):
            actions.append(LogReady())
        self.state = DaemonState.RUNNING
        self.error = ""
        if self.headless and not ev.session_open and not self.done:
            actions.append(StartSession())
        return Transition(self.state, tuple(actions))

    def _restarting(self, ev: WorkerRestarting) -> Transition:
        if self.state is DaemonState.RUNNING:
            self.state = DaemonState.DEGRADED
        # Starting, degraded or failed stays so: a restart is no news about the whole.
        return Transition(self.state, (Announce(
            ev.worker, WorkerState.RESTARTING,
            f"{ev.worker} died ({ev.cause}); restarting in {ev.delay_s:g} s",
            (("pid", ev.pid), ("delay_s", ev.delay_s))),))

    def _gave_up(self, ev: WorkerGaveUp) -> Transition:
        self.state = DaemonState.FAILED
        self.error = ev.why + (f"\n--- last lines of {ev.log_path} ---\n"
                               + "\n".join(ev.log_tail) if ev.log_tail else "")
        actions: list[Action] = [Announce(ev.worker, WorkerState.FAILED, ev.why)]
        if self.headless:
            self.stop_requested = True  # nobody is there to read the failed state
            actions.append(Stop(f"the run failed: {ev.why}"))
        return Transition(self.state, tuple(actions))

    def _run_complete(self) -> Transition:
        if not self.headless:
            return self._ignore("RunComplete in a daemon that is no file run")
        if self.done:
            return self._ignore("RunComplete twice")
        if self.state is not DaemonState.RUNNING:
            return self._ignore(f"RunComplete while {self.state.value}")
        self.done = True
        return Transition(self.state, (EndSession("the input file ended", "input_ended"),))

    def _session_closed(self) -> Transition:
        if not self.done:
            return self._ignore("SessionClosed before the run was complete")
        if self.stop_requested:
            return self._ignore("SessionClosed after the stop")
        self.stop_requested = True
        return Transition(self.state, (Stop("the file run is done"),))

    def _stop_requested(self, ev: StopRequested) -> Transition:
        if self.stop_requested:
            return self._ignore("StopRequested twice")
        self.stop_requested = True
        return Transition(self.state, (Stop(ev.why),))

    def _ignore(self, why: str) -> Transition:
        return Transition(self.state, ignored=why)
