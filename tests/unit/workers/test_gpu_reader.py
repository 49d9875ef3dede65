"""Egress's reader of a GPU output ring (reactor.workers.gpu_reader): device RGB in, the
encoder's I420 picture out, the same as the CPU path's within one level."""

from __future__ import annotations

import os

import numpy as np
import pytest

from reactor.ipc import ShmRing
from reactor.ipc.cuda_ring import CudaRing
from reactor.media.convert import BT601, rgb_to_frame
from reactor.media.encoder import Encoder
from reactor.workers.gpu_reader import PlanesReader

pytestmark = pytest.mark.cuda


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
