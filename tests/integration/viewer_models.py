"""A model for measuring what a viewer sees (imported by the daemon's workers)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from reactor import Session, VideoModel

#: The frame-number marker: two rows of BITS blocks of BLOCK px (the number, then its
#: complement) in the top left corner, white (235) for a 1 bit, black (16) for a 0.
BLOCK, BITS = 32, 16
MARKER_W, MARKER_H = BLOCK * BITS, 2 * BLOCK


def draw_number(rgb: np.ndarray, number: int) -> None:
    for row, value in enumerate((number, ~number & 0xFFFF)):
        for bit in range(BITS):
            on = (value >> (BITS - 1 - bit)) & 1
            rgb[row * BLOCK:(row + 1) * BLOCK, bit * BLOCK:(bit + 1) * BLOCK] = (
                235 if on else 16)


class NumberedFrames(VideoModel):
    """Grey frames numbered 0, 1, 2, ... (mod 65536, :func:`draw_number`), at ``video.fps``.
    ``args.log`` gets one line a frame: its number and ``time.time()`` when ``emit()``
    returned, which is when the frame entered the output ring: a viewer that reads the
    number when the frame is shown, on the same clock, measures emit-to-glass."""

    def load(self, config: dict[str, Any]) -> None:
        self.log = Path(config["log"])

    def start_session(self, session: Session) -> None:
        base = np.full((session.height, session.width, 3), 96, np.uint8)
        n = 0
        with self.log.open("a", buffering=1) as log:
            while not session.should_stop():
                frame = base.copy()
                draw_number(frame, n & 0xFFFF)
                session.emit(frame)
                log.write(f"{n & 0xFFFF} {time.time():.6f}\n")
                n += 1
