from __future__ import annotations

import pickle
from typing import Any

import multiprocess
import pytest

import tests.support.ring as kit
from reactor.ipc import CudaRing, RingClosedError, RingError, RingTimeout
from reactor.ipc.cuda_ring import HandleCache


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def test_cuda_ring_is_created_and_pickled_without_touching_cuda(name: str) -> None:
    with CudaRing.create(name, slots=3, shape=(720, 1280, 3), policy="block") as ring:
        attached = pickle.loads(pickle.dumps(ring))
        assert attached.handle == ring.handle and attached.shape == (720, 1280, 3)
        assert ring.stats().slots == 3 and ring.stats().policy == "block"
        attached.close()
        if not _has_cuda():
            with pytest.raises(RingError, match="torch|CUDA"):
                ring.reader()


def test_handle_cache_opens_once_per_producer_generation() -> None:
    cache, opened = HandleCache(), []

    def open_blob() -> tuple[str, int]:
        opened.append(1)
        return f"pool{len(opened)}", 5  # the pool and four slots' events

    assert [cache.get(3, open_blob) for _ in range(100)] == ["pool1"] * 100
    assert (len(opened), cache.opens) == (1, 5)
    assert cache.get(4, open_blob) == "pool2"  # a restarted producer published anew
    assert cache.get(4, open_blob) == "pool2"
    assert (len(opened), cache.opens) == (2, 10)


@pytest.fixture
def torch() -> Any:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return torch


@pytest.mark.cuda
def test_frames_cross_processes_as_device_tensors(name: str, torch: Any) -> None:
    with CudaRing.create(name, slots=3, shape=(256, 256, 3), policy="block") as ring:
        reader = ring.reader()
        ctx = multiprocess.get_context("spawn")
        producer = ctx.Process(target=kit.cuda_produce, args=(ring, 50), daemon=True)
        producer.start()
        try:
            seqs = []
            while True:
                try:
                    frame = reader.read(timeout=30)
                except RingClosedError:
                    break
                assert frame is not None and frame.array.is_cuda
                assert int(frame.array.min()) == int(frame.array.max()) == frame.seq % 256
                seqs.append(frame.seq)
            assert seqs == list(range(1, 51))
            # The pool and each slot's event, opened once: none per frame.
            assert reader.handle_opens == 1 + ring.slots
        finally:
            producer.join(30)
            if producer.is_alive():
                producer.kill()
                producer.join(5)
        reader.close()


@pytest.mark.cuda
def test_in_process_reserve_latest_and_backpressure(name: str, torch: Any) -> None:
    with CudaRing.create(name, slots=2, shape=(4, 4), policy="block") as ring:
        reader = ring.reader()
        with ring.reserve(frame_id=9) as slot:
            slot.array.fill_(7)
        ring.write(torch.ones((4, 4), dtype=torch.uint8, device="cuda"))
        with pytest.raises(RingTimeout):
            ring.write(torch.ones((4, 4), dtype=torch.uint8, device="cuda"), timeout=0.1)
        frame = reader.read(timeout=1)
        assert frame is not None and frame.frame_id == 9 and int(frame.array.sum()) == 7 * 16
        frame.release()
        ring.write(torch.zeros((4, 4), dtype=torch.uint8), timeout=1)  # host tensors too
        assert [reader.read(timeout=1).seq for _ in range(2)] == [2, 3]  # type: ignore[union-attr]
        reader.close()


@pytest.mark.cuda
def test_write_carries_pts_and_host_arrays_and_opens_no_handle_per_frame(
        name: str, torch: Any) -> None:
    import numpy as np

    with CudaRing.create(name, slots=3, shape=(8, 8, 3), policy="block") as ring:
        reader = ring.reader()
        for i in range(30):
            src = (np.full((8, 8, 3), i, np.uint8) if i % 2
                   else torch.full((8, 8, 3), i, dtype=torch.uint8, device="cuda"))
            ring.write(src, pts=1000 + i, timeout=1)
            frame = reader.read(timeout=1)
            assert frame is not None and frame.pts == 1000 + i
            assert int(frame.array.max()) == i and frame.array.is_cuda
            frame.release()
        assert reader.handle_opens == 1 + ring.slots
        assert ring.handle_opens == ring.slots  # the reader's "released" events, once
        reader.close()
