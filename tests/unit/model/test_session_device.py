"""``emit()`` on the GPU path: a CUDA tensor goes to an IO whose output ring is on the
device as a device tensor; anything else is converted to host frames as before."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from reactor import FrameError, Session, VideoModel
from reactor.model.frames import device_frames
from reactor.model.session import PendingCommand

torch = pytest.importorskip("torch")


class _Model(VideoModel):
    def start_session(self, session: Session) -> None:
        pass


class _DeviceIO:
    """A SessionIO whose output ring is on a GPU (``device_output``): keeps what it got."""

    start_ns = 0
    realtime = False
    device_output = True

    def __init__(self) -> None:
        self.written: list[Any] = []

    def read_input(self, timeout: float) -> None:
        return None

    def input_pts(self) -> None:
        return None

    def write_output(self, frames: Any) -> int:
        self.written.append(frames)
        return 0

    def clock_ns(self) -> int:
        return 0

    def write_audio(self, pcm: np.ndarray, pts_ns: int) -> None:
        raise AssertionError("no audio here")

    def read_audio(self, timeout: float) -> None:
        return None

    def poll_commands(self) -> list[PendingCommand]:
        return []

    def stopping(self) -> bool:
        return False

    def send(self, message: Any) -> None:
        pass


def _session(io: _DeviceIO) -> Session:
    return Session(_Model(), io, id="s", width=6, height=4, fps=30)


def test_device_frames_keep_torch_tensors_and_convert_float_chw_in_place() -> None:
    u8 = torch.full((4, 6, 3), 9, dtype=torch.uint8)
    block = device_frames(u8, 4, 6)
    assert tuple(block.shape) == (1, 4, 6, 3) and block.data_ptr() == u8.data_ptr()
    chw = torch.full((2, 3, 4, 6), 0.5)
    out = device_frames(chw, 4, 6)
    assert tuple(out.shape) == (2, 4, 6, 3) and out.dtype == torch.uint8
    assert int(out.min()) == int(out.max()) == 128
    with pytest.raises(FrameError, match=r"found torch tensor shape \(4, 6\) dtype torch.uint8"):
        device_frames(torch.zeros((4, 6), dtype=torch.uint8), 4, 6)


def test_a_host_tensor_still_reaches_the_ring_as_a_numpy_block() -> None:
    io = _DeviceIO()
    _session(io).emit(torch.full((4, 6, 3), 3, dtype=torch.uint8))
    (block,) = io.written
    assert isinstance(block, np.ndarray) and block.shape == (1, 4, 6, 3)


@pytest.mark.cuda
def test_a_cuda_tensor_reaches_a_gpu_ring_without_leaving_the_device() -> None:
    io = _DeviceIO()
    frame = torch.full((4, 6, 3), 5, dtype=torch.uint8, device="cuda")
    _session(io).emit(frame)
    (block,) = io.written
    assert block.is_cuda and tuple(block.shape) == (1, 4, 6, 3)
    assert block.data_ptr() == frame.data_ptr()  # no copy at all before the ring's
    io.device_output = False
    _session(io).emit(frame)
    assert isinstance(io.written[-1], np.ndarray)  # a host ring: copied down, as before


@pytest.mark.cuda
def test_a_cupy_array_reaches_a_gpu_ring_as_a_torch_view_of_the_same_memory() -> None:
    cupy = pytest.importorskip("cupy")
    io = _DeviceIO()
    frame = cupy.full((4, 6, 3), 7, dtype=cupy.uint8)
    _session(io).emit(frame)
    (block,) = io.written
    assert block.is_cuda and block.data_ptr() == frame.data.ptr
    assert int(block.max()) == 7
