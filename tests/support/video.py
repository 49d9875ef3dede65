"""Generated H.264 input files for ``reactor run`` and the pipeline bench."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np


def _write(path: Path, width: int, height: int, frames: int, fps: int,
           options: dict[str, object], frame: Callable[[int], np.ndarray]) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = options
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(frame(i), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def make_ramp_video(path: Path, frames: int, width: int = 320, height: int = 240,
                    fps: int = 30) -> Path:
    """Grey frames whose left part brightens by 3 columns a frame, near-lossless (qp 0), so
    that pixel checks on the output are exact enough."""

    def frame(i: int) -> np.ndarray:
        a = np.full((height, width, 3), 100, np.uint8)
        a[:, : i * 3] = 200
        return a

    return _write(path, width, height, frames, fps, {"qp": "0"}, frame)


def make_noise_video(path: Path, width: int, height: int, frames: int, fps: int = 30) -> Path:
    """A blocky noise texture scrolling sideways: real motion for the encoder to work on."""
    rng = np.random.default_rng(7)
    tile = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), np.uint8)
    base = tile.repeat(8, 0).repeat(8, 1)[:height, :width]
    return _write(path, width, height, frames, fps, {"preset": "ultrafast", "crf": "23"},
                  lambda i: np.roll(base, 4 * i, axis=1))


def centre(frame: av.VideoFrame, box: tuple[slice, slice] | None = None) -> np.ndarray:
    """The mean RGB of ``box`` of a decoded frame (by default the 8x8 pixels at its
    centre)."""
    a = frame.to_ndarray(format="rgb24")
    h, w = a.shape[:2]
    region = a[box] if box else a[h // 2 - 4 : h // 2 + 4, w // 2 - 4 : w // 2 + 4]
    return region.reshape(-1, 3).mean(axis=0)
