"""Child-process bodies for the ring tests (spawned, so they must be importable)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from reactor.ipc import ShmRing

SHAPE = (256, 1024)  # 256 KiB: long enough a copy that a torn read would be caught


def fill(array: np.ndarray, seq: int) -> None:
    """Every byte says ``seq & 0xff`` and the first eight say ``seq``: a torn frame mixes them."""
    flat = array.reshape(-1)
    flat[8:] = seq & 0xFF
    flat[:8].view(np.int64)[0] = seq


def check(array: np.ndarray, seq: int) -> bool:
    flat = array.reshape(-1)
    return int(flat[:8].view(np.int64)[0]) == seq and bool((flat[8:] == (seq & 0xFF)).all())


def produce(ring: ShmRing, count: int, seconds: float) -> None:
    """Write frames ``1..count`` at full speed, alternating ``write`` and ``reserve``."""
    frame = np.empty(ring.shape, np.uint8)
    end = time.monotonic() + seconds
    for seq in range(1, count + 1):
        if time.monotonic() > end:
            break
        if seq % 2:
            fill(frame, seq)
            assert ring.write(frame, frame_id=seq * 10, timeout=5) == seq
        else:
            with ring.reserve(timeout=5, frame_id=seq * 10) as slot:
                fill(slot.array, slot.seq)
    ring.close()


def produce_then_hang(ring: ShmRing, ready: Any) -> None:
    ring.write(np.zeros(ring.shape, ring.dtype))
    ready.set()
    time.sleep(60)


def hold_then_hang(ring: ShmRing, ready: Any) -> None:
    reader = ring.reader()
    frame = reader.read(timeout=5)
    assert frame is not None
    ready.set()
    time.sleep(60)


def create_then_hang(name: str, conn: Any) -> None:
    ring = ShmRing.create(name, slots=2, shape=(16,))
    conn.send(ring.handle)
    time.sleep(60)


def read_one_and_close(ring: ShmRing, conn: Any) -> None:
    reader = ring.reader()
    conn.send("ready")
    frame = reader.read(timeout=5)
    conn.send(None if frame is None else int(frame.array.sum()))
    reader.close()
    ring.close()


def cuda_produce(ring: Any, count: int) -> None:
    """Write ``count`` device frames whose every element is ``seq % 256``."""
    import torch

    for seq in range(1, count + 1):
        frame = torch.full(ring.shape, seq % 256, dtype=torch.uint8, device="cuda")
        assert ring.write(frame, timeout=10) == seq
    torch.cuda.synchronize()
    ring.close()


def die_holding_claims(handle: Any, conn: Any) -> None:
    """Claim the producer, register a reader row and write aux blob 1, then exit: a
    process that dies without giving anything back."""
    from reactor.ipc.segment import Segment

    seg = Segment.open(handle)
    seg.claim_producer()
    index, token, _ = seg.register(block=False)
    seg.aux_write(1 + index, f"child {index} {token}".encode())
    conn.send((index, token))
