from __future__ import annotations

import numpy as np
import pytest

from reactor import FrameError
from reactor.model.frames import to_pipeline_frames

H, W = 6, 8


def test_uint8_hwc_passes_through_as_a_block() -> None:
    f = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    out = to_pipeline_frames(f, H, W)
    assert out.shape == (1, H, W, 3) and out.dtype == np.uint8
    assert np.array_equal(out[0], f)


def test_uint8_block() -> None:
    block = np.zeros((4, H, W, 3), dtype=np.uint8)
    assert to_pipeline_frames(block, H, W).shape == (4, H, W, 3)


def test_float_chw_is_scaled_clipped_and_transposed() -> None:
    f = np.zeros((3, H, W), dtype=np.float32)
    f[0] = 1.0
    f[1] = 0.5
    f[2] = 7.0  # out of range: clipped
    out = to_pipeline_frames(f, H, W)[0]
    assert out.shape == (H, W, 3)
    assert tuple(out[0, 0]) == (255, 128, 255)


def test_float_block() -> None:
    assert to_pipeline_frames(np.zeros((2, 3, H, W)), H, W).shape == (2, H, W, 3)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((H, W, 3), dtype=np.float32),  # float must be CHW
        np.zeros((W, H, 3), dtype=np.uint8),  # transposed size
        np.zeros((H, W, 4), dtype=np.uint8),  # RGBA
        np.zeros((H, W), dtype=np.uint8),  # grey
        np.zeros((3, H, W), dtype=np.int16),
        [[0]],
    ],
)
def test_wrong_frames_name_expected_and_found(bad: object) -> None:
    with pytest.raises(FrameError) as err:
        to_pipeline_frames(bad, H, W)
    msg = str(err.value)
    assert f"({H}, {W}, 3)" in msg and "found" in msg


def test_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    u8 = torch.full((H, W, 3), 7, dtype=torch.uint8)
    assert to_pipeline_frames(u8, H, W)[0, 0, 0, 0] == 7
    fl = torch.ones((2, 3, H, W))
    out = to_pipeline_frames(fl, H, W)
    assert out.shape == (2, H, W, 3) and out.max() == 255
    with pytest.raises(FrameError, match="torch tensor"):
        to_pipeline_frames(torch.zeros((H, W, 3)), H, W)
