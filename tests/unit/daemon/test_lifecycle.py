"""The daemon's life cycle on its own: events in, state and actions out, on a fake clock."""

from __future__ import annotations

import pytest

from reactor.daemon.lifecycle import (
    AllReady,
    Announce,
    DaemonState,
    EndSession,
    Event,
    FreezeGc,
    Lifecycle,
    LogReady,
    RunComplete,
    SessionClosed,
    ShuttingDown,
    StartSession,
    Stop,
    StopRequested,
    Transition,
    WorkerGaveUp,
    WorkerReady,
    WorkerRestarting,
)
from reactor.daemon.pool import WorkerState
from tests.support.fakes import FakeClock

RESTARTING = WorkerRestarting("egress", 4242, "exit code 1", 0.5)
GAVE_UP = WorkerGaveUp("inference", "inference failed to start: boom",
                       "/run/logs/inference.log", ("line 1", "line 2"))


def make(clock: FakeClock, *, headless: bool = False, state: DaemonState | None = None,
         ) -> Lifecycle:
    """A life cycle, taken to ``state`` by the events that lead there."""
    lc = Lifecycle(headless=headless, now=clock())
    path: dict[DaemonState, tuple[Event, ...]] = {
        DaemonState.STARTING: (),
        DaemonState.RUNNING: (AllReady(),),
        DaemonState.DEGRADED: (AllReady(), RESTARTING),
        DaemonState.FAILED: (GAVE_UP,),
        DaemonState.STOPPING: (ShuttingDown(),),
    }
    for event in path[state or DaemonState.STARTING]:
        lc.on(event)
    assert lc.state is (state or DaemonState.STARTING)
    return lc


def test_all_ready_at_start_runs_freezes_the_heap_and_logs_ready(clock: FakeClock) -> None:
    lc = make(clock)
    clock.advance(2.5)
    t = lc.on(AllReady())
    assert t == Transition(DaemonState.RUNNING, (FreezeGc(), LogReady()))
    assert lc.uptime(clock()) == 2.5


def test_a_restart_degrades_a_running_daemon_and_is_announced(clock: FakeClock) -> None:
    lc = make(clock, state=DaemonState.RUNNING)
    clock.advance(10.0)
    t = lc.on(RESTARTING)
    assert t.state is DaemonState.DEGRADED
    assert t.actions == (Announce("egress", WorkerState.RESTARTING,
                                  "egress died (exit code 1); restarting in 0.5 s",
                                  (("pid", 4242), ("delay_s", 0.5))),)


def test_all_ready_again_runs_a_degraded_daemon_without_freezing_again(
        clock: FakeClock) -> None:
    lc = make(clock, state=DaemonState.DEGRADED)
    clock.advance(1.0)
    assert lc.on(AllReady()) == Transition(DaemonState.RUNNING, (LogReady(),))


def test_a_restarted_worker_is_announced_a_first_start_is_not(clock: FakeClock) -> None:
    lc = make(clock, state=DaemonState.DEGRADED)
    assert lc.on(WorkerReady("egress", 1, 0)).actions == ()
    t = lc.on(WorkerReady("egress", 4343, 2))
    assert t == Transition(DaemonState.DEGRADED, (Announce(
        "egress", WorkerState.RUNNING, "egress restarted (pid 4343)",
        (("pid", 4343), ("restarts", 2))),))


def test_a_restart_before_the_daemon_ran_or_after_it_failed_keeps_the_state(
        clock: FakeClock) -> None:
    for state in (DaemonState.STARTING, DaemonState.FAILED, DaemonState.DEGRADED):
        lc = make(clock, state=state)
        t = lc.on(RESTARTING)
        assert t.state is state and len(t.actions) == 1


@pytest.mark.parametrize("state", [DaemonState.STARTING, DaemonState.RUNNING,
                                   DaemonState.DEGRADED, DaemonState.FAILED])
def test_a_worker_given_up_on_fails_the_daemon_with_its_last_log_lines(
        clock: FakeClock, state: DaemonState) -> None:
    lc = make(clock, state=state)
    t = lc.on(GAVE_UP)
    assert t == Transition(DaemonState.FAILED, (Announce(
        "inference", WorkerState.FAILED, "inference failed to start: boom"),))
    assert lc.error == ("inference failed to start: boom\n--- last lines of "
                        "/run/logs/inference.log ---\nline 1\nline 2")
    assert not lc.stop_requested  # a daemon stays, failed, for `status` to show


def test_a_start_timeout_with_no_log_says_only_why(clock: FakeClock) -> None:
    lc = make(clock)
    lc.on(WorkerGaveUp("inference", "inference did not become ready within 30 s"))
    assert lc.error == "inference did not become ready within 30 s"


def test_a_failed_daemon_runs_again_when_every_worker_is_ready(clock: FakeClock) -> None:
    lc = make(clock, state=DaemonState.FAILED)
    t = lc.on(AllReady())
    # Not a first start (no freeze) and no `ready` line: as before the state machine.
    assert t == Transition(DaemonState.RUNNING, ())
    assert lc.error == ""


def test_a_stop_is_asked_for_once(clock: FakeClock) -> None:
    lc = make(clock, state=DaemonState.RUNNING)
    assert lc.on(StopRequested("a signal")) == Transition(
        DaemonState.RUNNING, (Stop("a signal"),))
    assert lc.stop_requested
    again = lc.on(StopRequested("over the control socket"))
    assert (again.state, again.actions, again.ignored) == (
        DaemonState.RUNNING, (), "StopRequested twice")


@pytest.mark.parametrize("event", [AllReady(), WorkerReady("egress", 1, 1), RESTARTING,
                                   GAVE_UP, StopRequested("x"), ShuttingDown()])
def test_nothing_moves_a_stopping_daemon(clock: FakeClock, event: Event) -> None:
    lc = make(clock, state=DaemonState.STOPPING)
    t = lc.on(event)
    assert (t.state, t.actions) == (DaemonState.STOPPING, ())
    assert t.ignored == f"{type(event).__name__} after the shutdown began"
    assert lc.error == ""


def test_shutting_down_stops_from_any_state(clock: FakeClock) -> None:
    for state in (DaemonState.STARTING, DaemonState.RUNNING, DaemonState.DEGRADED,
                  DaemonState.FAILED):
        lc = make(clock, state=state)
        clock.advance(1.0)
        assert lc.on(ShuttingDown()) == Transition(DaemonState.STOPPING)


# --- a file run (reactor run) ------------------------------------------------------------


def test_a_file_run_starts_its_session_when_ready_unless_one_is_open(clock: FakeClock) -> None:
    lc = make(clock, headless=True)
    assert lc.on(AllReady()).actions == (FreezeGc(), LogReady(), StartSession())
    lc = make(clock, headless=True)
    assert StartSession() not in lc.on(AllReady(session_open=True)).actions


def test_a_file_run_ends_its_session_when_complete_then_stops_when_it_closed(
        clock: FakeClock) -> None:
    lc = make(clock, headless=True, state=DaemonState.RUNNING)
    assert (lc.awaiting_completion, lc.restartable) == (True, False)
    assert lc.on(RunComplete()) == Transition(
        DaemonState.RUNNING, (EndSession("the input file ended", "input_ended"),))
    assert (lc.done, lc.awaiting_completion, lc.restartable) == (True, False, True)
    assert not lc.stop_requested  # the session's end still flushes the sink
    assert lc.on(SessionClosed()) == Transition(
        DaemonState.RUNNING, (Stop("the file run is done"),))
    assert lc.stop_requested
    # A worker that becomes ready after the run is done does not start another session.
    assert StartSession() not in lc.on(AllReady()).actions


def test_a_file_run_stops_when_a_worker_is_given_up_on(clock: FakeClock) -> None:
    lc = make(clock, headless=True, state=DaemonState.RUNNING)
    t = lc.on(GAVE_UP)
    assert t.state is DaemonState.FAILED
    assert t.actions[-1] == Stop("the run failed: inference failed to start: boom")
    assert lc.stop_requested


def test_completion_out_of_order_is_ignored(clock: FakeClock) -> None:
    daemon = make(clock, state=DaemonState.RUNNING)
    assert daemon.on(RunComplete()).ignored == (
        "RunComplete in a daemon that is no file run")
    assert not daemon.awaiting_completion
    starting = make(clock, headless=True)
    assert starting.on(RunComplete()).ignored == "RunComplete while starting"
    assert not starting.done
    running = make(clock, headless=True, state=DaemonState.RUNNING)
    assert running.on(SessionClosed()).ignored == (
        "SessionClosed before the run was complete")
    assert not running.stop_requested
    running.on(RunComplete())
    assert running.on(RunComplete()).ignored == "RunComplete twice"
    running.on(SessionClosed())
    assert running.on(SessionClosed()).ignored == "SessionClosed after the stop"
