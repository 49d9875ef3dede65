"""Synthetic cameras for aiortc senders (WHIP publishers, raw peer connections)."""

from __future__ import annotations

import time

import av
import numpy as np
from aiortc import VideoStreamTrack

# The frame-number marker: two rows of BITS blocks (the number, then its complement),
# big enough to survive H.264 at any bitrate the tests and benches use.
BLOCK_W, BLOCK_H, BITS = 64, 48, 16


class SquareTrack(VideoStreamTrack):
    """Grey frames with a bright square whose colour we choose (rgb24, at 30 fps)."""

    def __init__(self, width: int, height: int, color: tuple[int, int, int]) -> None:
        super().__init__()
        self.frame = np.full((height, width, 3), 60, np.uint8)
        self.frame[height // 4 : height // 2, width // 4 : width // 2] = color
        self.n = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        f = av.VideoFrame.from_ndarray(self.frame, format="rgb24")
        f.pts, f.time_base = pts, time_base
        self.n += 1
        return f


def draw_marker(y: np.ndarray, number: int) -> None:
    """Write ``number`` (16 bits) and its complement into the luma plane ``y``."""
    for row, value in enumerate((number, ~number & 0xFFFF)):
        for bit in range(BITS):
            on = (value >> (BITS - 1 - bit)) & 1
            y[row * BLOCK_H:(row + 1) * BLOCK_H, bit * BLOCK_W:(bit + 1) * BLOCK_W] = (
                235 if on else 16)


def read_marker(y: np.ndarray) -> int | None:
    """The number drawn by :func:`draw_marker`, or None when the rows disagree."""
    values = []
    for row in range(2):
        cy = row * BLOCK_H + BLOCK_H // 2
        centres = y[cy - 8:cy + 8, BLOCK_W // 2:BITS * BLOCK_W:BLOCK_W]
        bits = centres.mean(axis=0) > 128
        values.append(int("".join("1" if b else "0" for b in bits), 2))
    return values[0] if values[0] == (~values[1] & 0xFFFF) else None


class NumberedTrack(VideoStreamTrack):
    """yuv420p frames of a scrolling texture, each carrying its number (see
    :func:`draw_marker`); ``sent[number]`` is the ``perf_counter()`` at which it was handed
    to the encoder, for glass-to-glass latency."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        rng = np.random.default_rng(11)
        tile = rng.integers(40, 216, (height // 16 + 1, width // 16 + 1), np.uint8)
        self.base = tile.repeat(16, 0).repeat(16, 1)[:height, :width]
        self.chroma = np.full((height // 2, width), 128, np.uint8)
        self.sent: dict[int, float] = {}
        self.n = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        number = self.n & 0xFFFF
        self.n += 1
        y = np.roll(self.base, 4 * self.n, axis=1)
        draw_marker(y, number)
        frame = av.VideoFrame.from_ndarray(np.vstack([y, self.chroma]), format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        self.sent[number] = time.perf_counter()
        return frame
