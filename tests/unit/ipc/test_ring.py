from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import multiprocess
import numpy as np
import pytest

import tests.support.ring as kit
from reactor.errors import ReactorError
from reactor.ipc import (
    Policy,
    ProducerGoneError,
    RingClosedError,
    RingError,
    RingSpaceError,
    RingStats,
    RingTimeout,
    ShmRing,
)

CTX = multiprocess.get_context("spawn")


@pytest.fixture
def procs() -> Iterator[list[Any]]:
    """Processes a test starts; every one is stopped when it ends."""
    started: list[Any] = []
    yield started
    for p in started:
        if p.is_alive():
            p.kill()
        p.join(5)


def spawn(procs: list[Any], target: Any, *args: Any) -> Any:
    p = CTX.Process(target=target, args=args, daemon=True)
    p.start()
    procs.append(p)
    return p


def shm_exists(name: str) -> bool:
    return os.path.exists(f"/dev/shm/{name}")


def test_latest_reader_gets_newest_and_counts_drops(name: str) -> None:
    with ShmRing.create(name, slots=4, shape=(2, 3), policy="latest") as ring:
        reader = ring.reader()
        assert reader.read(timeout=0) is None
        for i in range(10):
            ring.write(np.full((2, 3), i, np.uint8), frame_id=100 + i, session_id=7)
        frame = reader.read(timeout=0)
        assert frame is not None
        assert (frame.seq, frame.frame_id, frame.session_id) == (10, 109, 7)
        assert (frame.array == 9).all()
        assert frame.capture_ts <= frame.enqueue_ts <= time.perf_counter_ns()
        assert reader.dropped == 9
        ring.write(np.zeros((2, 3), np.uint8))
        assert reader.read(timeout=0).seq == 11  # type: ignore[union-attr]
        assert reader.dropped == 9
        assert ring.stats() == RingStats(name=name, slots=4, used=1, dropped=9,
                                         policy="latest", written=11, consumers=1)
        reader.close()
        assert ring.stats().dropped == 9  # a departed reader's drops still count


def test_frames_are_zero_copy_views_and_reserve_renders_in_place(name: str) -> None:
    with ShmRing.create(name, slots=3, shape=(4, 5, 3)) as ring:
        reader = ring.reader()
        with ring.reserve(frame_id=5) as slot:
            assert slot.array.shape == (4, 5, 3) and slot.array.flags.writeable
            slot.array[...] = 42
            slot.session_id = 3
        frame = reader.read(timeout=0)
        assert frame is not None and (frame.array == 42).all()
        assert (frame.frame_id, frame.session_id) == (5, 3)
        assert np.shares_memory(frame.array, ring.segment.writable[frame.slot])
        assert not frame.array.flags.writeable
        with pytest.raises(ValueError), ring.reserve() as slot:
            slot.array[...] = 1
            raise ValueError("model failed mid-frame")
        assert reader.read(timeout=0) is None  # the aborted frame was never published
        assert ring.stats().written == 1


def test_an_idle_reader_costs_no_cpu(name: str) -> None:
    with ShmRing.create(name, slots=2, shape=(4,)) as ring:
        ring.write(np.zeros(4, np.uint8))  # a live producer: the reader checks on it
        reader = ring.reader()
        assert reader.read(timeout=0) is not None
        cpu, wall = time.process_time(), time.monotonic()
        assert reader.read(timeout=0.5) is None
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        assert 0.45 < wall < 1.0
        assert cpu < 0.02 * wall, f"parked reader used {100 * cpu / wall:.1f}% of a core"


def test_write_rejects_wrong_frame_naming_the_ring(name: str) -> None:
    with ShmRing.create(name, slots=2, shape=(4, 4, 3)) as ring:
        with pytest.raises(RingError, match=rf"{name}.*\(4, 4, 3\) uint8.*\(4, 4\) uint8"):
            ring.write(np.zeros((4, 4), np.uint8))
        with pytest.raises(RingError):
            ring.write(np.zeros((4, 4, 3), np.float32))


def test_block_producer_waits_and_times_out_with_a_clear_error(name: str) -> None:
    with ShmRing.create(name, slots=2, shape=(8,), policy="block") as ring:
        reader = ring.reader()
        ring.write(np.zeros(8, np.uint8))
        ring.write(np.ones(8, np.uint8))
        t0 = time.monotonic()
        with pytest.raises(RingTimeout, match=rf"{name}.*{os.getpid()}"):
            ring.write(np.ones(8, np.uint8), timeout=0.2)
        assert 0.15 < time.monotonic() - t0 < 1.0
        assert isinstance(RingTimeout("x"), ReactorError)

        first = reader.read(timeout=0)
        assert first is not None and first.seq == 1
        with pytest.raises(RingTimeout):  # holding the frame keeps its slot
            ring.write(np.ones(8, np.uint8), timeout=0.05)

        # A producer parked on a full ring wakes as soon as the reader releases.
        done: list[float] = []

        def write_one() -> None:
            ring.write(np.ones(8, np.uint8), timeout=5)
            done.append(time.monotonic())

        writer = threading.Thread(target=write_one)
        writer.start()
        time.sleep(0.2)
        assert not done
        released = time.monotonic()
        first.release()
        writer.join(5)
        assert done and done[0] - released < 0.05
        assert [reader.read(timeout=0).seq for _ in range(2)] == [2, 3]  # type: ignore[union-attr]
        assert reader.read(timeout=0) is None and reader.dropped == 0


def test_block_ring_without_readers_never_waits(name: str) -> None:
    with ShmRing.create(name, slots=2, shape=(8,), policy="block") as ring:
        for _ in range(5):
            ring.write(np.zeros(8, np.uint8), timeout=0)
        reader = ring.reader()  # a block reader sees frames written after it registered
        assert reader.read(timeout=0) is None
        ring.write(np.zeros(8, np.uint8))
        assert reader.read(timeout=0).seq == 6  # type: ignore[union-attr]


@pytest.mark.parametrize("policy", ["latest", "block"])
def test_no_torn_frames_across_processes_at_full_speed(
    name: str, procs: list[Any], policy: Policy
) -> None:
    with ShmRing.create(name, slots=3, shape=kit.SHAPE, policy=policy) as ring:
        reader = ring.reader()
        producer = spawn(procs, kit.produce, ring, 1_000_000, 1.5)
        seen = 0
        last = 0
        rng = np.random.default_rng(0)
        while True:
            try:
                frame = reader.read(timeout=5)
            except RingClosedError:
                break
            assert frame is not None, "producer stalled"
            assert frame.seq > last and frame.frame_id == frame.seq * 10
            if policy == "block":
                assert frame.seq == last + 1
            assert kit.check(frame.array, frame.seq), f"torn frame {frame.seq}"
            if rng.random() < 0.2:  # hold the slot while the producer laps the ring
                time.sleep(0.0005)
                assert kit.check(frame.array, frame.seq), f"frame {frame.seq} overwritten"
            last = frame.seq
            seen += 1
        producer.join(5)
        assert producer.exitcode == 0
        assert seen > 100
        if policy == "block":
            assert reader.dropped == 0 and seen == last
        else:
            assert reader.dropped == last - seen


def test_reader_finds_out_that_the_producer_died(name: str, procs: list[Any]) -> None:
    with ShmRing.create(name, slots=2, shape=(16,)) as ring:
        reader = ring.reader()
        ready = CTX.Event()
        producer = spawn(procs, kit.produce_then_hang, ring, ready)
        assert ready.wait(10)
        assert reader.read(timeout=1) is not None  # what it wrote before dying is read first
        os.kill(producer.pid, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(ProducerGoneError, match=rf"{name}.*pid {producer.pid}"):
            reader.read(timeout=10)
        assert time.monotonic() - t0 < 1.0
        ring.write(np.ones(16, np.uint8))  # a restarted producer takes over
        assert reader.read(timeout=1).seq == 2  # type: ignore[union-attr]


def test_block_producer_survives_a_reader_that_died(name: str, procs: list[Any]) -> None:
    with ShmRing.create(name, slots=2, shape=(16,), policy="block") as ring:
        ready = CTX.Event()
        consumer = spawn(procs, kit.hold_then_hang, ring, ready)
        time.sleep(0.05)
        while ring.stats().consumers == 0:
            time.sleep(0.01)
        ring.write(np.zeros(16, np.uint8), timeout=5)
        assert ready.wait(10)
        ring.write(np.zeros(16, np.uint8), timeout=5)
        with pytest.raises(RingTimeout):
            ring.write(np.zeros(16, np.uint8), timeout=0.1)
        os.kill(consumer.pid, signal.SIGKILL)
        t0 = time.monotonic()
        ring.write(np.zeros(16, np.uint8), timeout=5)
        assert time.monotonic() - t0 < 1.0
        assert ring.stats().consumers == 0


def test_closing_producer_and_owner_end_readers(name: str) -> None:
    ring = ShmRing.create(name, slots=3, shape=(4,))
    attached = ShmRing.attach(ring.handle)
    reader = ring.reader()
    attached.write(np.ones(4, np.uint8))
    attached.close()
    assert reader.read(timeout=1) is not None
    with pytest.raises(RingClosedError, match="producer closed"):
        reader.read(timeout=1)
    other = ShmRing.attach(ring.handle)
    other_reader = other.reader()
    assert other_reader.read(timeout=0) is not None  # a new latest reader gets the newest
    ring.close()
    with pytest.raises(RingClosedError, match="closed by its owner"):
        other_reader.read(timeout=1)
    other.close()
    with pytest.raises(RingClosedError, match="does not exist"):
        ShmRing.attach(ring.handle)


def test_one_producer_per_ring(name: str, procs: list[Any]) -> None:
    with ShmRing.create(name, slots=2, shape=(4,)) as ring:
        ready = CTX.Event()
        spawn(procs, kit.produce_then_hang, ring, ready)
        assert ready.wait(10)
        with pytest.raises(RingError, match="already has a producer"):
            ring.write(np.ones(4, np.uint8))


def test_reader_limit_names_the_config_key(name: str) -> None:
    with ShmRing.create(name, slots=3, shape=(4,), max_consumers=4) as ring:
        readers = [ring.reader(), ring.reader()]  # latest: one slot must stay writable
        with pytest.raises(RingError, match=r"rings\.input_slots"):
            ring.reader()
        readers[0].close()
        ring.reader()


def test_pickled_handle_attaches_and_attacher_never_unlinks(name: str, procs: list[Any]) -> None:
    with ShmRing.create(name, slots=2, shape=(4,)) as ring:
        handle = pickle.loads(pickle.dumps(ring.handle))
        assert len(pickle.dumps(ring)) < 400
        parent, child = CTX.Pipe()
        consumer = spawn(procs, kit.read_one_and_close, ring, child)
        assert parent.poll(10) and parent.recv() == "ready"
        ring.write(np.full(4, 3, np.uint8))
        assert parent.poll(5) and parent.recv() == 12
        consumer.join(5)
        assert consumer.exitcode == 0
        assert shm_exists(name)
        again = ShmRing.attach(handle)
        again.close()
        assert shm_exists(name)
        assert ring.stats().consumers == 0
    assert not shm_exists(name)


def test_segment_of_a_killed_creator_is_removed_by_unlink_name(procs: list[Any]) -> None:
    ring_name = f"reactor-test-{os.getpid()}-killed"
    parent, child = CTX.Pipe()
    creator = spawn(procs, kit.create_then_hang, ring_name, child)
    assert parent.poll(10)
    handle = parent.recv()
    ring = ShmRing.attach(handle)
    os.kill(creator.pid, signal.SIGKILL)
    creator.join(5)
    ring.close()
    assert shm_exists(ring_name)  # an attacher never unlinks...
    assert ShmRing.unlink_name(ring_name)  # ...the supervisor's clean-up does
    assert not shm_exists(ring_name)
    assert not ShmRing.unlink_name(ring_name)
    with ShmRing.create(ring_name, slots=2, shape=(16,)):  # and the name can be reused
        assert shm_exists(ring_name)
    assert not shm_exists(ring_name)


def test_owner_may_unlink_early_and_keep_using_the_ring(name: str) -> None:
    ring = ShmRing.create(name, slots=2, shape=(4,))
    ring.unlink()
    assert not shm_exists(name)
    with ShmRing.create(name, slots=2, shape=(4,)) as successor:  # the name is free again
        reader = ring.reader()  # the old ring still works in this process
        ring.write(np.ones(4, np.uint8))
        assert reader.read(timeout=0) is not None
        ring.close()
        assert shm_exists(name)  # closing the old ring leaves its successor alone
        successor.write(np.ones(4, np.uint8))
    assert not shm_exists(name)


def test_create_refuses_an_existing_name(name: str) -> None:
    with ShmRing.create(name, slots=2, shape=(4,)):
        with pytest.raises(RingError, match=rf"unlink_name\('{name}'\)"):
            ShmRing.create(name, slots=2, shape=(4,))


def test_too_little_shared_memory_is_a_clear_error(name: str) -> None:
    with pytest.raises(RingSpaceError) as info:
        ShmRing.create(name, slots=8, shape=(100_000, 100_000, 3))
    message = str(info.value)
    for key in ("rings.input_slots", "rings.output_slots", "video.width", "video.height", name):
        assert key in message
    assert "240000" in message and "/dev/shm" in message
    assert not shm_exists(name)


def test_handle_for_reads_an_existing_rings_handle_from_its_header() -> None:
    name = f"reactor-test-handle-{os.getpid()}"
    ring = ShmRing.create(name, slots=3, shape=(4, 6, 3), policy="block", max_consumers=2)
    try:
        assert ShmRing.handle_for(name) == ring.handle
    finally:
        ring.close()
        ring.unlink()
    with pytest.raises(RingClosedError):
        ShmRing.handle_for(name)
