from __future__ import annotations

import av
import numpy as np
import pytest

from reactor.media.convert import VIDEO_TIME_BASE
from reactor.media.encoder import Encoder, EncoderError

W, H = 320, 240


def _frames(n: int) -> list[np.ndarray]:
    base = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


def _nal_types(data: bytes) -> set[int]:
    types = set()
    for chunk in data.split(b"\x00\x00\x01")[1:]:
        if chunk:
            types.add(chunk[0] & 0x1F)
    return types


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_one_packet_per_frame_90khz_and_decodable(codec: str) -> None:
    enc = Encoder(codec, W, H, bitrate_kbps=1000)  # type: ignore[arg-type]
    decoder = av.CodecContext.create("h264" if codec == "h264" else "libvpx", "r")
    decoded = 0
    for i, rgb in enumerate(_frames(10)):
        packets = enc.encode(rgb, pts=i * 3000)
        assert len(packets) == 1  # zero latency: no look-ahead, no B-frame reordering
        packet = packets[0]
        assert packet.pts == i * 3000 and packet.time_base == VIDEO_TIME_BASE
        assert packet.is_keyframe == (i == 0)
        decoded += len(decoder.decode(packet))
    assert decoded == 10
    assert enc.frames_encoded == 10 and enc.keyframes == 1


def test_h264_is_constrained_baseline_with_inband_headers_on_forced_keyframes() -> None:
    enc = Encoder("h264", W, H)
    frames = _frames(6)
    first = bytes(enc.encode(frames[0], 0)[0])
    assert {7, 8, 5} <= _nal_types(first)  # SPS, PPS, IDR
    sps = first[first.index(b"\x00\x00\x01\x67") + 4 :]
    assert sps[0] == 66 and sps[1] & 0x40  # profile_idc baseline, constraint_set1
    assert _nal_types(bytes(enc.encode(frames[1], 3000)[0])) == {1}  # P slice only
    enc.force_keyframe()
    forced = enc.encode(frames[2], 6000)[0]
    assert forced.is_keyframe and {7, 8, 5} <= _nal_types(bytes(forced))


def test_vp8_forced_keyframe() -> None:
    enc = Encoder("vp8", W, H)
    frames = _frames(3)
    enc.encode(frames[0], 0)
    assert not enc.encode(frames[1], 3000)[0].is_keyframe
    enc.force_keyframe()
    assert enc.encode(frames[2], 6000)[0].is_keyframe


def test_hardware_request_falls_back_without_nvenc() -> None:
    enc = Encoder("h264", W, H, hardware=True)
    assert enc.name in ("h264_nvenc", "libx264")
    assert enc.encode(_frames(1)[0], 0)[0].is_keyframe


def test_bad_arguments() -> None:
    with pytest.raises(EncoderError, match="unknown codec"):
        Encoder("av1", W, H)  # type: ignore[arg-type]
    with pytest.raises(EncoderError, match="even"):
        Encoder("h264", 321, 240)
    enc = Encoder("h264", W, H)
    with pytest.raises(EncoderError, match="expects 320x240"):
        enc.encode(np.zeros((480, 640, 3), np.uint8), 0)
    enc.close()
    with pytest.raises(EncoderError, match="closed"):
        enc.encode(_frames(1)[0], 0)
