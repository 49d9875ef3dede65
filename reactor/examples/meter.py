"""An audio-reactive filter: the microphone's level meter drawn over the camera.

It shows how a model uses sound and picture on one thread: for each camera frame it takes
the sound that has arrived since the last one (``session.audio_inputs(block=False)``, which
never waits), measures it and draws the result into the frame. Run it with
``configs/meter.yaml`` (``audio: {input: true}``) and a client that sends its camera and
microphone.

The meter is a strip along the bottom of the frame: a bar for the RMS level, coloured
green, yellow and red as it passes -18 and -6 dBFS, a white line for the peak, and a scale
in dB from `floor_db` (left edge) to 0 dBFS (right edge). Like a hardware meter it rises at
once and falls back at `FALL_DB_PER_S`, so a 20 ms click stays visible.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reactor import Field, Session, VideoModel, command
from reactor.examples.font import draw_text

#: How fast the bar and the peak line fall back after a loud moment, in dB per second.
FALL_DB_PER_S = 30.0
#: Where the bar turns from green to yellow and from yellow to red, in dBFS.
YELLOW_DB, RED_DB = -18.0, -6.0
GREEN, YELLOW, RED = (0, 200, 60), (230, 200, 0), (230, 30, 30)
#: The bar's background, and the colour of the scale and of the peak line.
TROUGH, INK = (24, 24, 24), (255, 255, 255)


def level_db(samples: np.ndarray) -> tuple[float, float]:
    """RMS and peak of float samples in dBFS (a full-scale square wave is 0 dBFS; a
    full-scale sine's RMS is -3 dBFS); ``-inf`` for silence."""
    if samples.size == 0:
        return -math.inf, -math.inf
    x = samples.astype(np.float64, copy=False)
    rms = float(np.sqrt(np.mean(x * x)))
    peak = float(np.max(np.abs(x)))
    return (20 * math.log10(rms) if rms > 0 else -math.inf,
            20 * math.log10(peak) if peak > 0 else -math.inf)


def meter_layout(height: int, width: int) -> tuple[slice, slice]:
    """Rows and columns of the bar itself (the scale is drawn under it); column ``x0 + i``
    stands for ``floor_db + (0 - floor_db) * i / (x1 - x0)`` dBFS."""
    margin = max(2, height // 60)
    bar_h = max(6, height // 16)
    scale_h = 9 * max(1, height // 240)
    bottom = height - margin - scale_h
    return slice(bottom - bar_h, bottom), slice(margin, width - margin)


class LevelMeter(VideoModel):
    """Passes the camera through with the microphone's level meter drawn along the bottom."""

    name = "LevelMeter"

    def load(self, config: dict[str, Any]) -> None:
        self.floor_db = float(config.get("floor_db", -60.0))
        if not -120.0 <= self.floor_db <= -20.0:
            raise ValueError(f"model.args.floor_db: expected -120 to -20 (dBFS); "
                             f"found {self.floor_db:g}")

    @command
    def set_floor(self, floor_db: float = Field(-60.0, ge=-120.0, le=-20.0)) -> None:
        """The quietest level the meter shows, in dBFS (the bar's left edge)."""
        self.floor_db = floor_db

    def _x(self, db: float, x0: int, x1: int) -> int:
        """The column that `db` reaches, between x0 (the floor or below) and x1 (0 dBFS)."""
        if not math.isfinite(db):
            return x0
        frac = min(1.0, max(0.0, (db - self.floor_db) / -self.floor_db))
        return x0 + round(frac * (x1 - x0))

    def _draw(self, out: np.ndarray, rms: float, peak: float, label: str) -> None:
        h, w = out.shape[:2]
        rows, cols = meter_layout(h, w)
        x0, x1 = cols.start, cols.stop
        scale = max(1, h // 240)
        out[rows, cols] = TROUGH
        end = self._x(rms, x0, x1)
        for lo, hi, colour in ((self.floor_db, YELLOW_DB, GREEN), (YELLOW_DB, RED_DB, YELLOW),
                               (RED_DB, 0.0, RED)):
            a, b = max(self._x(lo, x0, x1), x0), min(self._x(hi, x0, x1), end)
            if b > a:
                out[rows, a:b] = colour
        if math.isfinite(peak):
            p = min(self._x(peak, x0, x1), x1 - scale)
            out[rows, p:p + scale] = INK
        # The scale, on a dark band: a tick every 10 dB, labelled every 20.
        tick_y = rows.stop
        out[tick_y:tick_y + 9 * scale, cols] = TROUGH
        for db in range(0, int(self.floor_db) - 1, -10):
            x = min(self._x(db, x0, x1), x1 - scale)
            out[tick_y:tick_y + 2 * scale, x:x + scale] = INK
            if db % 20 == 0:
                text_w = len(str(db)) * 6 * scale - scale
                tx = min(max(x - text_w // 2, x0), x1 - text_w)
                draw_text(out, str(db), tx, tick_y + 2 * scale, scale=scale, background=None)
        draw_text(out, label, x0 + scale, rows.start - 9 * scale, scale=scale)

    def start_session(self, session: Session) -> None:
        fall = FALL_DB_PER_S / session.fps  # dB per frame
        rms_shown = peak_shown = -math.inf
        for frame in session.inputs():
            out = frame.copy()
            if session.audio_input:
                # Everything that arrived since the last frame; never waits, so the camera
                # sets the pace and a silent microphone does not stall the picture.
                chunks = list(session.audio_inputs(block=False))
                rms, peak = level_db(np.concatenate(chunks)) if chunks else (-math.inf,) * 2
                rms_shown = max(rms, rms_shown - fall)
                peak_shown = max(peak, peak_shown - fall)
                label = (f"RMS {rms_shown:5.1f} DB  PEAK {peak_shown:5.1f} DB"
                         if math.isfinite(rms_shown) else "SILENCE")
            else:
                label = "NO SOUND: AUDIO.INPUT IS OFF"
            self._draw(out, rms_shown, peak_shown, label)
            session.emit(out)
