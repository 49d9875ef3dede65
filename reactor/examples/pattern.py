"""The default model: moving colour bars with a frame counter and a caption."""

from __future__ import annotations

from typing import Any

import numpy as np

from reactor import Field, Session, VideoModel, command
from reactor.examples.font import draw_text

# SMPTE-like bar colours, left to right.
BARS = np.array(
    [
        (192, 192, 192),
        (192, 192, 0),
        (0, 192, 192),
        (0, 192, 0),
        (192, 0, 192),
        (192, 0, 0),
        (0, 0, 192),
        (16, 16, 16),
    ],
    dtype=np.uint8,
)


class TestPattern(VideoModel):
    """Colour bars that scroll sideways, a frame counter and a caption you can set."""

    name = "TestPattern"
    __test__ = False  # not a pytest test class, despite the name

    def load(self, config: dict[str, Any]) -> None:
        self.speed = float(config.get("speed", 4.0))
        self.text = str(config.get("text", "REACTOR"))
        self.paused = False
        self._tile: np.ndarray | None = None

    @command
    def set_speed(self, speed: float = Field(4.0, ge=-64.0, le=64.0)) -> None:
        """Scroll speed of the bars, in pixels per frame (negative scrolls left)."""
        self.speed = speed

    @command
    def set_text(self, text: str = Field("REACTOR", max_length=40)) -> None:
        """The caption drawn under the frame counter."""
        self.text = text

    @command
    def pause(self, paused: bool = True) -> None:
        """Stop (or restart) the bars moving; the counter keeps counting."""
        self.paused = paused

    def _bars(self, height: int, width: int) -> np.ndarray:
        # Two bar widths side by side, so any scroll offset is one contiguous slice.
        if self._tile is None or self._tile.shape[:2] != (height, 2 * width):
            idx = (np.arange(2 * width) * len(BARS) // width) % len(BARS)
            self._tile = np.ascontiguousarray(np.broadcast_to(BARS[idx], (height, 2 * width, 3)))
        return self._tile

    def start_session(self, session: Session) -> None:
        h, w = session.height, session.width
        tile = self._bars(h, w)
        frame = np.empty((h, w, 3), dtype=np.uint8)
        scale = max(2, h // 120)
        offset = 0.0
        n = 0
        while not session.should_stop():
            x = int(offset) % w
            frame[:] = tile[:, x : x + w]
            draw_text(frame, f"{n:06d}", 2 * scale, 2 * scale, scale=scale)
            draw_text(frame, self.text, 2 * scale, 12 * scale, scale=scale)
            session.emit(frame)
            n += 1
            if not self.paused:
                offset -= self.speed
