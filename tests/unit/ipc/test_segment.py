"""The segment on its own: the consumer table, liveness and aux blobs, without a ring."""

from __future__ import annotations

import os
from collections.abc import Iterator

import multiprocess
import pytest

import tests.support.ring as kit
from reactor.ipc import ProducerGoneError, RingClosedError, RingError, Segment, ShmRing


@pytest.fixture
def seg(name: str) -> Iterator[Segment]:
    segment = Segment.create(name, slots=3, shape=(16,), max_consumers=4, aux_bytes=200)
    yield segment
    segment.close()


def test_aux_blobs_round_trip_per_index_with_an_even_version(seg: Segment) -> None:
    assert seg.handle.aux_bytes == 256  # rounded up to 64
    assert seg.aux_read(0) == (0, b"")
    seg.aux_write(0, b"producer")
    seg.aux_write(3, b"reader 2")
    assert seg.aux_read(0) == (2, b"producer")
    assert seg.aux_read(3) == (2, b"reader 2")
    seg.aux_write(0, b"p2")
    assert (seg.aux_version(0), seg.aux_read(0)) == (4, (4, b"p2"))
    assert seg.aux_read(1) == (0, b"") and seg.aux_read(4) == (0, b"")
    with pytest.raises(RingError, match=f"ring '{seg.name}'.*241 bytes too big"):
        seg.aux_write(2, b"x" * 241)  # 16 bytes of version and length, 240 of payload
    seg.aux_write(2, b"x" * 240)
    assert seg.aux_read(2) == (2, b"x" * 240)


def test_register_fills_rows_up_to_the_latest_limit_and_unregister_frees_one(
    seg: Segment,
) -> None:
    first = seg.register(block=False)
    second = seg.register(block=False)
    assert [first[0], second[0]] == [0, 1]
    assert seg.registrations() == [(0, first[1]), (1, second[1])]
    # latest: one slot more than readers, so 3 slots take 2 readers though 4 rows exist
    with pytest.raises(RingError, match=r"already has 2 readers.*rings\.input_slots"):
        seg.register(block=False)
    seg.unregister(0, first[1] + 1, dropped=5)  # a stale token: someone else's row now
    assert seg.registrations() == [(0, first[1]), (1, second[1])]
    seg.unregister(0, first[1], dropped=5)
    assert seg.registrations() == [(1, second[1])]
    assert seg.occupancy()["dropped"] == 5  # a departed reader's drops stay counted
    again = seg.register(block=False)
    assert again[0] == 0 and again[1] == first[1] + 1


def test_block_rows_are_limited_by_max_consumers_only(name: str) -> None:
    seg = Segment.create(name, slots=2, shape=(4,), policy="block", max_consumers=3)
    try:
        rows = [seg.register(block=True)[0] for _ in range(3)]
        assert rows == [0, 1, 2]
        with pytest.raises(RingError, match=r"already has 3 readers.*rings\.output_slots"):
            seg.register(block=True)
    finally:
        seg.close()


def test_producer_liveness_follows_its_claim_and_release(seg: Segment) -> None:
    seg.check_producer()  # nobody claimed it yet: nothing to report
    generation = seg.producer_generation
    assert seg.claim_producer() == 0  # LATEST: nothing published yet
    assert seg.producer_generation == generation + 1
    seg.check_producer()
    seg.release_producer()
    with pytest.raises(RingClosedError, match="its producer closed it"):
        seg.check_producer()
    seg.unlink()
    with pytest.raises(RingClosedError, match="closed by its owner"):
        seg.check_producer()


def test_a_dead_process_is_found_dead_and_its_row_reaped(seg: Segment) -> None:
    ctx = multiprocess.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=kit.die_holding_claims, args=(seg.handle, child), daemon=True)
    proc.start()
    try:
        assert parent.poll(30)
        index, token = parent.recv()
    finally:
        proc.join(10)
    assert proc.exitcode == 0
    # What it wrote stays readable; its claims are found dead.
    assert seg.aux_read(1 + index) == (2, f"child {index} {token}".encode())
    assert seg.registrations() == [(index, token)]
    with pytest.raises(ProducerGoneError, match=f"pid {proc.pid}"):
        seg.check_producer()
    seg.reap()
    assert seg.registrations() == []
    assert seg.claim_producer() == 0  # a dead producer's claim is taken over


def test_read_handle_gives_the_creators_handle(seg: Segment) -> None:
    assert Segment.read_handle(seg.name) == seg.handle
    opened = Segment.open(seg.handle)
    try:
        assert opened.handle == seg.handle and not opened.closed
    finally:
        opened.close()
    assert opened.closed and os.path.exists(f"/dev/shm/{seg.name}")  # openers never unlink


def test_open_refuses_a_file_that_is_no_ring_or_has_another_size(name: str) -> None:
    seg = Segment.create(name, slots=2, shape=(8,))
    handle = seg.handle
    seg.close()  # unlinks
    fds = len(os.listdir("/proc/self/fd"))
    with open(f"/dev/shm/{name}", "wb") as f:
        f.truncate(handle.total_bytes)  # the right size, but all zeros: no magic
    try:
        with pytest.raises(RingError, match=f"ring '{name}' at /dev/shm/{name} is not a reactor"):
            Segment.open(handle)
        os.truncate(f"/dev/shm/{name}", handle.total_bytes + 4096)
        with pytest.raises(RingError, match=r"recreated with another size; re-read its handle"):
            Segment.open(handle)
        assert len(os.listdir("/proc/self/fd")) == fds  # neither left its descriptor open
        assert os.path.exists(f"/dev/shm/{name}")  # and neither removed a file it does not own
    finally:
        ShmRing.unlink_name(name)
