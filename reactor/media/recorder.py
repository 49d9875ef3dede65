"""Record the output stream to an MP4 file (``egress.record``, ``reactor run --output``)."""

from __future__ import annotations

import fractions
import logging
from pathlib import Path

import av
import numpy as np

from reactor.config import Config
from reactor.errors import ReactorError
from reactor.media.convert import rgb_to_frame
from reactor.media.encoder import COLOUR

log = logging.getLogger(__name__)


class Recorder:
    """H.264 in MP4, one frame per ``write``, timestamps at the configured fps.

    Colour as the live H.264 stream has it (:data:`reactor.media.encoder.COLOUR`), with
    the same colour description in the SPS (and so in the MP4's ``colr`` box).
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: int,
                 bitrate_kbps: int = 4000) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), mode="w")
        except (OSError, av.FFmpegError) as exc:
            raise ReactorError(f"cannot record to {self.path}: {exc}") from None
        stream = self._container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bitrate_kbps * 1000
        stream.options = {"preset": "veryfast", "tune": "zerolatency"}
        self._colour = COLOUR["h264"]
        ctx = stream.codec_context
        ctx.colorspace = self._colour.colorspace
        ctx.color_primaries = self._colour.primaries
        ctx.color_trc = self._colour.trc
        ctx.color_range = self._colour.range
        # Frames are stamped in 1/fps. Not ``stream.time_base``: the muxer replaces that with
        # its own (1/15360 for MP4) when it writes the header, and frame numbers read in
        # that base collapse onto the same timestamps (the muxer then rejects frame 257).
        self._time_base = fractions.Fraction(1, fps)
        stream.time_base = self._time_base
        self._stream = stream
        self._closed = False
        self.frames = 0
        log.info("recording to %s", self.path)

    @classmethod
    def open(cls, config: Config, path: str | Path | None = None) -> Recorder:
        v = config.video
        target = path or config.egress.record
        assert target is not None
        return cls(target, v.width, v.height, v.fps, config.egress.bitrate_kbps)

    def write(self, rgb: np.ndarray) -> None:
        # rgb_to_frame wraps the array and converts once (libswscale): 1.4 ms at 720p,
        # against 4.9 ms for from_ndarray, which copies row by row first.
        frame = rgb_to_frame(rgb, self.frames, self._time_base, self._colour)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()
            log.info("recorded %d frames to %s", self.frames, self.path)
