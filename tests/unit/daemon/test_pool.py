"""The worker pool's restart policy, on a fake clock with processes that only live or die."""

from __future__ import annotations

import pytest

from reactor.config import SupervisorSection
from reactor.daemon.pool import BACKOFF_S, HUNG_S, Outcome, WorkerPool, WorkerState
from reactor.proto import worker_pb2 as wpb
from tests.support.fakes import FakeClock, Spawner

NAMES = ("ingress", "inference", "egress")


def make_pool(clock: FakeClock, spawner: Spawner, *, max_crashes: int = 100,
              window: float = 60.0, load_timeout: float = 30.0) -> WorkerPool:
    pool = WorkerPool(NAMES, spawner, SupervisorSection(max_crashes=max_crashes,
                                                        crash_window_s=window),
                      load_timeout_s=load_timeout, clock=clock)
    pool.start_all()
    for name in NAMES:
        pool.mark_ready(name, wpb.Ready())
    return pool


def crash(pool: WorkerPool, name: str, code: int = 1) -> None:
    proc = pool[name].process
    assert proc is not None
    proc.exit(code)  # type: ignore[attr-defined]


def state_of(pool: WorkerPool, name: str) -> WorkerState:
    return pool[name].state


def test_backoff_grows_with_each_crash_and_the_restart_waits_for_it(
        clock: FakeClock, spawner: Spawner) -> None:
    pool = make_pool(clock, spawner)
    for attempt, delay in enumerate((*BACKOFF_S, BACKOFF_S[-1]), start=1):
        crash(pool, "inference")
        verdict = pool.on_exit("inference")
        assert (verdict.outcome, verdict.delay_s) == (Outcome.RESTART, delay)
        assert verdict.cause == "exit code 1"
        assert pool["inference"].state == WorkerState.RESTARTING
        clock.advance(delay - 0.01)
        assert pool.tick() == []
        assert len(spawner.of("inference")) == attempt  # not yet
        clock.advance(0.02)
        pool.tick()
        assert len(spawner.of("inference")) == attempt + 1
        # Read again after the tick (mypy would keep the RESTARTING it narrowed above).
        assert state_of(pool, "inference") == WorkerState.STARTING
        assert pool["inference"].restarts == attempt
        pool.mark_ready("inference", wpb.Ready())
    assert [len(spawner.of(n)) for n in ("ingress", "egress")] == [1, 1]  # others untouched


def test_crashes_older_than_the_window_are_forgotten(clock: FakeClock, spawner: Spawner) -> None:
    pool = make_pool(clock, spawner, max_crashes=3, window=60.0)
    for _ in range(2):
        crash(pool, "egress")
        pool.on_exit("egress")
        clock.advance(5.0)
        pool.tick()
        pool.mark_ready("egress", wpb.Ready())
    clock.advance(61.0)
    crash(pool, "egress")
    verdict = pool.on_exit("egress")
    # Only this crash is in the window: no give-up, and the backoff starts over.
    assert (verdict.outcome, verdict.delay_s) == (Outcome.RESTART, BACKOFF_S[0])


def test_max_crashes_within_the_window_gives_up_naming_the_setting(
        clock: FakeClock, spawner: Spawner) -> None:
    pool = make_pool(clock, spawner, max_crashes=3, window=60.0)
    verdicts = []
    for _ in range(3):
        crash(pool, "egress", 7)
        verdicts.append(pool.on_exit("egress"))
        clock.advance(5.0)
        pool.tick()
        if pool["egress"].state == WorkerState.STARTING:
            pool.mark_ready("egress", wpb.Ready())
    assert [v.outcome for v in verdicts] == [Outcome.RESTART, Outcome.RESTART, Outcome.GIVE_UP]
    assert verdicts[-1].why == ("egress crashed 3 times in 60 s (supervisor.max_crashes is 3); "
                                "last: exit code 7")
    # A failed worker stays down: the pool does not restart it on its own.
    clock.advance(100.0)
    pool.tick()
    assert len(spawner.of("egress")) == 3
    assert pool["egress"].state == WorkerState.FAILED


def test_a_worker_that_never_became_ready_is_given_up_at_once(
        clock: FakeClock, spawner: Spawner) -> None:
    pool = WorkerPool(NAMES, spawner, SupervisorSection(), load_timeout_s=30.0, clock=clock)
    pool.start_all()
    pool["inference"].last_error = "ModelLoadError: no weights"
    crash(pool, "inference")
    verdict = pool.on_exit("inference")
    assert verdict.outcome is Outcome.GIVE_UP
    assert verdict.why == "inference failed to start: ModelLoadError: no weights"


def test_a_worker_of_a_file_run_is_not_restarted(clock: FakeClock, spawner: Spawner) -> None:
    pool = make_pool(clock, spawner)
    crash(pool, "egress", -9)
    verdict = pool.on_exit("egress", restartable=False)
    assert verdict.outcome is Outcome.GIVE_UP
    assert verdict.why == "egress died during the run: exit code -9"


def test_load_timeout_kills_the_worker_and_names_the_setting(
        clock: FakeClock, spawner: Spawner) -> None:
    pool = WorkerPool(NAMES, spawner, SupervisorSection(), load_timeout_s=30.0, clock=clock)
    pool.start_all()
    for name in ("ingress", "egress"):
        pool.mark_ready(name, wpb.Ready())
    clock.advance(29.0)
    assert pool.tick() == []
    clock.advance(2.0)
    (verdict,) = pool.tick()
    assert verdict.worker.name == "inference" and verdict.outcome is Outcome.GIVE_UP
    assert verdict.why == ("inference did not become ready within 30 s "
                           "(raise model.load_timeout_s if loading takes longer)")
    assert verdict.cause == ""  # it did not die on its own
    assert spawner.of("inference")[0].killed


def test_a_hung_worker_is_killed_and_then_restarted(clock: FakeClock, spawner: Spawner) -> None:
    pool = make_pool(clock, spawner)
    for _ in range(5):
        clock.advance(HUNG_S / 4)
        pool["ingress"].beat(wpb.WorkerStats(), clock())
        pool["inference"].beat(wpb.WorkerStats(), clock())
    pool.tick()
    assert spawner.of("egress")[0].killed  # silent for HUNG_S
    assert not spawner.of("ingress")[0].killed and not spawner.of("inference")[0].killed
    verdict = pool.on_exit("egress")
    assert verdict.outcome is Outcome.RESTART
    assert verdict.cause == "no heartbeat for 12 s (hung)"


def test_a_restart_request_revives_a_failed_worker_at_once(
        clock: FakeClock, spawner: Spawner) -> None:
    pool = make_pool(clock, spawner, max_crashes=1)
    crash(pool, "inference")
    assert pool.on_exit("inference").outcome is Outcome.GIVE_UP
    pool.restart("inference")
    assert len(spawner.of("inference")) == 2
    assert pool["inference"].state == WorkerState.STARTING
    assert pool["inference"].restarts == 1 and not pool["inference"].crashes


def test_a_restart_request_kills_a_running_worker(clock: FakeClock, spawner: Spawner) -> None:
    pool = make_pool(clock, spawner)
    pool.restart("egress")
    assert spawner.of("egress")[0].killed
    verdict = pool.on_exit("egress")
    assert (verdict.outcome, verdict.cause) == (Outcome.RESTART, "restarted by request")


def test_rates_come_from_heartbeats_and_a_death_zeroes_them(
        clock: FakeClock, spawner: Spawner) -> None:
    pool = make_pool(clock, spawner)
    w = pool["inference"]
    for i in range(5):
        w.beat(wpb.WorkerStats(frames_in=30 * i, frames_out=15 * i), clock())
        clock.advance(0.5)
    assert w.rates() == pytest.approx((60.0, 30.0))
    crash(pool, "inference")
    pool.on_exit("inference")
    assert w.rates() == (0.0, 0.0)


def test_stop_all_asks_then_terminates_what_stays(clock: FakeClock, spawner: Spawner) -> None:
    pool = make_pool(clock, spawner)
    asked: list[str] = []

    def ask(name: str) -> None:
        asked.append(name)
        if name != "egress":  # egress ignores the request
            pool[name].process.exit(0)  # type: ignore[union-attr]

    pool.stop_all(ask, grace_s=0.0)
    assert asked == list(NAMES)
    assert spawner.of("egress")[0].exitcode == -15
    assert [pool[n].state for n in NAMES] == [WorkerState.STOPPED] * 3
