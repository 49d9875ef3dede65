"""The default model: moving colour bars with a frame counter and a caption.

Once a second (on every frame whose number is a multiple of the fps) the counter flashes:
it is drawn inverted and the square in the top right corner turns from black to white.
With ``audio.output: true`` in the config (``configs/pattern-audio.yaml``) a 1 kHz beep of
100 ms starts with the first sample of that frame's sound, so a viewer (or
``tools/bench.py av``) can measure how far sound and picture are apart.
"""

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

#: The beep: frequency (Hz), length (s), peak level (of full scale) and fade in/out (s).
BEEP_HZ = 1000.0
BEEP_S = 0.1
BEEP_LEVEL = 0.5
BEEP_FADE_S = 0.002


def flash_box(height: int, width: int) -> tuple[slice, slice]:
    """Rows and columns of the square that is white on flash frames and black otherwise."""
    side = max(8, height // 6)
    margin = 2 * max(2, height // 120)
    top, right = margin, width - margin
    return slice(top, min(top + side, height)), slice(max(right - side, 0), right)


def beep_second(rate: int, channels: int) -> np.ndarray:
    """One second of the pattern's sound, float32 ``(rate, channels)``: the beep, then silence.

    The sine starts at phase 0 on the first sample, faded in and out over `BEEP_FADE_S`
    so it clicks no more than a beep must, yet starts within a couple of milliseconds.
    """
    n = int(rate * BEEP_S)
    t = np.arange(n) / rate
    beep = BEEP_LEVEL * np.sin(2 * np.pi * BEEP_HZ * t)
    fade = np.minimum(1.0, np.minimum(np.arange(n) + 1, n - np.arange(n)) / (rate * BEEP_FADE_S))
    second = np.zeros((rate, channels), dtype=np.float32)
    second[:n] = (beep * fade)[:, None]
    return second


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
        box = flash_box(h, w)
        fps, rate = session.fps, session.sample_rate
        # Each frame carries its own stretch of sound, so sound and frames stay locked: frame
        # n's audio is samples [n * rate // fps, (n + 1) * rate // fps) of a timeline on which
        # every second starts with the beep. Frame n = k * fps starts sample k * rate exactly.
        sound = beep_second(rate, session.channels) if session.audio_output else None
        offset = 0.0
        n = 0
        while not session.should_stop():
            x = int(offset) % w
            frame[:] = tile[:, x : x + w]
            flash = n % fps == 0
            if flash:
                draw_text(frame, f"{n:06d}", 2 * scale, 2 * scale, scale=scale,
                          color=(0, 0, 0), background=(255, 255, 255))
            else:
                draw_text(frame, f"{n:06d}", 2 * scale, 2 * scale, scale=scale)
            frame[box] = 255 if flash else 0
            draw_text(frame, self.text, 2 * scale, 12 * scale, scale=scale)
            if sound is None:
                session.emit(frame)
            else:
                second = (n // fps) * rate
                start, end = n * rate // fps - second, (n + 1) * rate // fps - second
                session.emit(frame, audio=sound[start:end])
            n += 1
            if not self.paused:
                offset -= self.speed
