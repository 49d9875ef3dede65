"""RGB -> I420 with torch ops (reactor.media.gpu_colour): the same picture as swscale's.

The conversion runs on the CPU here, the same torch ops egress runs on the GPU; the
``cuda``-marked test repeats the comparison on a device.
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np
import pytest

from reactor.media.convert import BT601, BT709, YuvColour, rgb_to_frame
from reactor.media.encoder import COLOUR, Encoder
from reactor.media.gpu_colour import HostPlanes, i420_frame, rgb_to_i420

torch = pytest.importorskip("torch")


def _frames(height: int, width: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:height, 0:width]
    gradient = np.stack([x * 255 // (width - 1), y * 255 // (height - 1),
                         (x + y) * 255 // (width + height - 2)], -1).astype(np.uint8)
    return {"noise": rng.integers(0, 256, (height, width, 3), np.uint8), "gradient": gradient,
            "solid": np.full((height, width, 3), (10, 220, 40), np.uint8)}


def _worst(rgb: np.ndarray, colour: YuvColour, device: str = "cpu") -> int:
    want = rgb_to_frame(rgb, 0, colour=colour).to_ndarray().astype(int)
    got = rgb_to_i420(torch.from_numpy(rgb).to(device), colour).cpu().numpy().astype(int)
    assert got.shape == want.shape == (rgb.shape[0] * 3 // 2, rgb.shape[1])
    return int(np.abs(got - want).max())


@pytest.mark.parametrize("colour", [BT601, BT709], ids=str)
def test_torch_conversion_matches_swscale_within_one_level(colour: YuvColour) -> None:
    for name, rgb in _frames(64, 96).items():
        assert _worst(rgb, colour) <= 1, name


def test_720p_in_the_encoders_colour_matches_swscale_within_one_level() -> None:
    assert COLOUR["h264"] == BT601  # what both paths make, and H.264 signals
    for name, rgb in _frames(720, 1280).items():
        assert _worst(rgb, COLOUR["h264"]) <= 1, name


def test_a_height_not_divisible_by_4_is_refused_by_the_planes_and_converted_by_swscale(
) -> None:
    rgb = _frames(6, 8)["gradient"]
    with pytest.raises(ValueError, match="height divisible by 4, found 6"):
        rgb_to_i420(torch.from_numpy(rgb))
    frame = HostPlanes(8, 6, pin=False).frame(torch.from_numpy(rgb), 9)
    want = rgb_to_frame(rgb, 9, colour=BT601).to_ndarray()
    assert np.array_equal(frame.to_ndarray(), want) and frame.pts == 9


def test_host_planes_make_a_tagged_yuv420p_frame_the_encoder_takes() -> None:
    rgb = _frames(240, 320)["gradient"]
    frame = HostPlanes(320, 240, pin=False).frame(torch.from_numpy(rgb), 3000)
    assert (frame.format.name, frame.width, frame.height, frame.pts) == ("yuv420p", 320, 240,
                                                                         3000)
    assert (int(frame.colorspace), int(frame.color_range)) == (6, 1)  # BT.601, limited
    enc = Encoder("h264", 320, 240)
    packets = enc.encode(frame, 3000)
    packets += enc.encode(i420_frame(rgb_to_i420(torch.from_numpy(rgb)).numpy(), None), 6000)
    assert enc.frames_encoded == 2 and enc.keyframes >= 1 and enc.bytes_out > 0
    assert [p.pts for p in packets] == [3000, 6000]


def test_gpu_planes_and_swscale_decode_to_the_same_picture() -> None:
    rgb = _frames(240, 320)["gradient"]
    pictures = []
    for source in (rgb, HostPlanes(320, 240, pin=False).frame(torch.from_numpy(rgb), 0)):
        enc = Encoder("h264", 320, 240, bitrate_kbps=8000)
        decoder: Any = av.CodecContext.create("h264", "r")
        frames = [f for p in enc.encode(source, 0) for f in decoder.decode(p)]
        frames += decoder.decode(None)
        pictures.append(frames[0].to_ndarray(format="rgb24").astype(int))
    assert np.abs(pictures[0] - pictures[1]).mean() < 0.5


@pytest.mark.cuda
def test_on_the_gpu_the_conversion_matches_swscale_within_one_level() -> None:
    for name, rgb in _frames(1080, 1920).items():
        assert _worst(rgb, BT601, "cuda") <= 1, name
    planes = HostPlanes(1920, 1080)  # pinned
    rgb = _frames(1080, 1920)["gradient"]
    frame = planes.frame(torch.from_numpy(rgb).cuda(), 1)
    want = rgb_to_frame(rgb, 1, colour=BT601).to_ndarray().astype(int)
    assert int(np.abs(frame.to_ndarray().astype(int) - want).max()) <= 1
