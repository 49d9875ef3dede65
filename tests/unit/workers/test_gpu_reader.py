"""Egress's reader of a GPU output ring (reactor.workers.gpu_reader): device RGB in, the
encoder's I420 picture out, the same as the CPU path's within one level."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest

from reactor.ipc import ShmRing
from reactor.ipc.cuda_ring import CudaRing
from reactor.media.convert import BT601, rgb_to_frame
from reactor.media.encoder import Encoder
from reactor.workers.gpu_reader import PlanesReader


class _Slot:
    """What a CudaReader hands out, with the RGB slot a CPU tensor: PlanesFrame only reads
    ``array``, the stamps and ``release()``."""

    def __init__(self, array: object) -> None:
        self.array, self.pts, self.enqueue_ts = array, 7, 8
        self.frame_id, self.session_id, self.capture_ts = 1, 2, 3
        self.released = 0

    def release(self) -> None:
        self.released += 1


def test_a_frame_s_picture_is_made_once_and_only_when_asked_for() -> None:
    torch = pytest.importorskip("torch")
    from reactor.media.gpu_colour import HostPlanes
    from reactor.workers.gpu_reader import PlanesFrame

    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, :, 1] = 200
    class Counted(HostPlanes):
        calls = 0

        def frame(self, rgb: object, pts: int | None) -> av.VideoFrame:
            Counted.calls += 1
            return super().frame(rgb, pts)

    slot = _Slot(torch.from_numpy(rgb))
    frame = PlanesFrame(slot, Counted(8, 8, pin=False))  # type: ignore[arg-type]
    assert (frame.pts, frame.enqueue_ts, frame.frame_id) == (7, 8, 1)
    assert Counted.calls == 0  # nothing converted for a frame nobody encodes
    picture = frame.array
    assert frame.array is picture and Counted.calls == 1
    assert picture.pts == 7 and picture.format.name == "yuv420p"
    want = rgb_to_frame(rgb, 7, colour=BT601).to_ndarray().astype(int)
    assert int(np.abs(picture.to_ndarray().astype(int) - want).max()) <= 1
    frame.release()
    assert slot.released == 1


@pytest.mark.cuda
def test_planes_reader_gives_swscale_s_picture_and_opens_handles_once() -> None:
    import torch

    name = f"reactor-test-gpu-reader-{os.getpid()}"
    h, w = 360, 640
    y, x = np.mgrid[0:h, 0:w]
    enc = Encoder("h264", w, h)
    with CudaRing.create(name, slots=3, shape=(h, w, 3), policy="block") as ring:
        reader = PlanesReader(ring)
        try:
            for i in range(20):
                rgb = np.stack([(x + i) % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
                ring.write(torch.from_numpy(rgb).cuda(), pts=i, timeout=1)
                frame = reader.read(1)
                assert frame is not None and frame.pts == i and frame.device_array.is_cuda
                want = rgb_to_frame(rgb, i, colour=BT601).to_ndarray().astype(int)
                got = frame.array.to_ndarray().astype(int)
                assert int(np.abs(got - want).max()) <= 1
                assert enc.encode(frame.array, i * 3000) is not None
                frame.release()
            assert reader.handle_opens == 1 + ring.slots
        finally:
            reader.close()
            ring.unlink()
    assert not ShmRing.unlink_name(name)
