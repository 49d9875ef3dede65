"""Video-to-video example: brightness, inversion and a colour tint on input frames."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from reactor import Field, Session, VideoModel, command


class Brightness(VideoModel):
    """Transforms the incoming video: gain, invert, and a channel mode."""

    def load(self, config: dict[str, Any]) -> None:
        self.gain = float(config.get("gain", 1.0))
        self.invert = bool(config.get("invert", False))
        self.mode: str = "rgb"
        self._lut = self._make_lut()

    def _make_lut(self) -> npt.NDArray[np.uint8]:
        ramp = np.arange(256, dtype=np.float32) * self.gain
        lut: npt.NDArray[np.uint8] = np.clip(ramp, 0, 255).astype(np.uint8)
        return 255 - lut if self.invert else lut

    @command
    def set_gain(self, gain: float = Field(1.0, ge=0.0, le=4.0)) -> None:
        """Multiply every pixel by gain."""
        self.gain = gain
        self._lut = self._make_lut()

    @command
    def set_invert(self, invert: bool = False) -> None:
        """Invert the picture (after the gain)."""
        self.invert = invert
        self._lut = self._make_lut()

    @command
    def set_mode(self, mode: Literal["rgb", "gray", "red"] = "rgb") -> None:
        """Keep all colours, turn the picture grey, or keep only the red channel."""
        self.mode = mode

    def end_session(self) -> None:
        self.gain, self.invert, self.mode = 1.0, False, "rgb"
        self._lut = self._make_lut()

    def start_session(self, session: Session) -> None:
        out = np.empty((session.height, session.width, 3), dtype=np.uint8)
        for frame in session.inputs():
            np.take(self._lut, frame, out=out)  # one table lookup: gain and invert together
            if self.mode == "gray":
                out[:] = out.mean(axis=2, keepdims=True, dtype=np.uint16).astype(np.uint8)
            elif self.mode == "red":
                out[..., 1:] = 0
            session.emit(out)


class Identity(VideoModel):
    """Passes input frames through unchanged: the baseline for benchmarks."""

    def start_session(self, session: Session) -> None:
        for frame in session.inputs():
            session.emit(frame)


class SolidColor(VideoModel):
    """A frame of one colour you can set: handy for checking commands end to end."""

    def load(self, config: dict[str, Any]) -> None:
        self.color = tuple(config.get("color", (255, 0, 0)))

    @command
    def set_color(
        self,
        r: int = Field(255, ge=0, le=255),
        g: int = Field(0, ge=0, le=255),
        b: int = Field(0, ge=0, le=255),
    ) -> None:
        """Fill every frame with this RGB colour."""
        self.color = (r, g, b)

    def start_session(self, session: Session) -> None:
        frame = np.empty((session.height, session.width, 3), dtype=np.uint8)
        while not session.should_stop():
            frame[:] = self.color
            session.emit(frame)
