"""The inference worker's counters: one writer (the model thread), snapshots for the
heartbeat that show one moment, and RingIO counting through them."""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from reactor.workers.inference import Counters, CountersSnapshot
from reactor.workers.ring_io import RingIO


def latency_count(snap: CountersSnapshot, stage: str) -> int:
    return next((st.count for st in snap.latency if st.stage == stage), 0)


@pytest.fixture
def fast_switching() -> Iterator[None]:
    # Switch threads as often as CPython allows, so a reader lands between any two of the
    # writer's steps.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def test_a_snapshot_is_a_frozen_copy(fast_switching: None) -> None:
    c = Counters()
    c.input_read(3.0)
    snap = c.snapshot()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.frames_in = 5  # type: ignore[misc]
    c.input_read(4.0)
    c.frame_written(1.0)
    assert (snap.frames_in, snap.frames_out, latency_count(snap, "input_ring")) == (1, 0, 1)
    assert (c.snapshot().frames_in, c.snapshot().frames_out) == (2, 1)


def test_a_frame_is_counted_in_the_step_that_ends_the_wait() -> None:
    c = Counters()
    c.waiting_for_input()
    assert (c.snapshot().awaiting_input, c.snapshot().frames_in) == (True, 0)
    c.input_read(None)  # the wait timed out: nothing to count
    assert (c.snapshot().awaiting_input, c.snapshot().frames_in) == (False, 0)
    c.waiting_for_input()
    c.input_read(2.5)
    snap = c.snapshot()
    assert (snap.awaiting_input, snap.frames_in, latency_count(snap, "input_ring")) == (
        False, 1, 1)


def test_snapshots_taken_while_the_model_thread_counts_are_each_one_moment(
        fast_switching: None) -> None:
    c = Counters()
    frames = 2_000
    done = threading.Event()
    seen: list[CountersSnapshot] = []

    def model_thread() -> None:
        for _ in range(frames):
            c.waiting_for_input()
            c.input_read(1.0)
            c.frame_written(2.0)
            c.audio_written(960)
        done.set()

    writer = threading.Thread(target=model_thread)
    writer.start()
    while not done.is_set():
        seen.append(c.snapshot())
    writer.join()
    seen.append(c.snapshot())
    assert len(seen) > 10
    for snap in seen:
        # Figures that move in one step are seen together: a frame read is its latency
        # sample, a frame written its model latency sample; separate steps are at most
        # one apart.
        assert snap.frames_in == latency_count(snap, "input_ring")
        assert snap.frames_out == snap.frames_emitted == latency_count(snap, "model")
        assert snap.frames_out in (snap.frames_in, snap.frames_in - 1)
        assert snap.audio_samples_out // 960 in (snap.frames_out, snap.frames_out - 1)
    assert [s.frames_in for s in seen] == sorted(s.frames_in for s in seen)
    assert seen[-1].frames_out == frames


def test_refused_audio_counts_the_session_as_it_goes_and_keeps_it_after() -> None:
    c = Counters()
    c.audio_read(480, stale_dropped=2)
    c.session_refused(1)
    c.session_refused(3)  # the session's own count, as it is now (not added up)
    assert c.snapshot().audio_dropped == 5
    c.session_ended()
    c.session_refused(1)  # the next session counts from 0
    assert (c.snapshot().audio_dropped, c.snapshot().audio_samples_in) == (6, 480)


class _Reader:
    """An input ring's reader that hands out one frame, and checks the counters while the
    model waits for it."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.seen_waiting: list[CountersSnapshot] = []
        self.frames = [SimpleNamespace(frame_id=7, enqueue_ts=0, capture_ts=None, pts=11,
                                       array=np.zeros((2, 2, 3), np.uint8))]

    def read(self, timeout: float) -> Any:
        self.seen_waiting.append(self.counters.snapshot())
        return self.frames.pop() if self.frames else None


def test_ring_io_counts_a_frame_read_through_the_counters() -> None:
    counters = Counters()
    reader = _Reader(counters)
    scheduled: list[int] = []
    worker = SimpleNamespace(output=None, input_device=None, headless=False, fps=30,
                             counters=counters, input_reader=reader,
                             schedule=scheduled.append)
    io = RingIO(worker, "s1", 1)  # type: ignore[arg-type]
    assert io.read_input(0.0) is not None
    assert io.read_input(0.0) is None
    assert [(s.awaiting_input, s.frames_in) for s in reader.seen_waiting] == [
        (True, 0), (True, 1)]
    snap = counters.snapshot()
    assert (snap.awaiting_input, snap.frames_in, scheduled) == (False, 1, [7])
