"""Streaming sample-rate and channel conversion for float32 audio, over FFmpeg's swresample.

WebRTC carries Opus at 48 kHz; a model works at ``audio.sample_rate`` (16, 24, 44.1 or
48 kHz) with ``audio.channels``. Ingress converts the clients' sound one way, egress and
the file sink the model's the other. A :class:`Resampler` keeps the filter's state from
one chunk to the next, so a stream cut into chunks converts as one piece: no clicks at
the seams, and the output's length follows the input's exactly over time (the filter
holds back about a millisecond, which :meth:`Resampler.flush` returns).
"""

from __future__ import annotations

import av
import numpy as np
from av.audio.resampler import AudioResampler

#: The rate WebRTC's Opus runs at.
OPUS_RATE = 48_000

_LAYOUTS = {1: "mono", 2: "stereo"}


class Resampler:
    """Convert float32 ``(samples, in_channels)`` at ``in_rate`` to float32
    ``(samples, out_channels)`` at ``out_rate``, chunk by chunk (one stream per object).

    Mono to stereo copies the channel; stereo to mono averages the two.
    """

    def __init__(self, in_rate: int, in_channels: int, out_rate: int, out_channels: int) -> None:
        self.in_rate, self.in_channels = in_rate, in_channels
        self.out_rate, self.out_channels = out_rate, out_channels
        self._same_rate = in_rate == out_rate
        self._swr = None if self._same_rate else AudioResampler(
            format="flt", layout=_LAYOUTS[out_channels], rate=out_rate)

    def __call__(self, pcm: np.ndarray) -> np.ndarray:
        """Convert one chunk; returns what the filter has ready (may be a few samples
        shorter or longer than ``len(pcm) * out_rate / in_rate``)."""
        if self._same_rate:
            return self._channels(np.asarray(pcm, np.float32))
        # Channels first, by our own rule: swresample's matrix would mix stereo to mono at
        # -3 dB a channel (0.707 for a full-scale pair) and copy mono to stereo at -3 dB.
        mixed = self._channels(np.asarray(pcm, np.float32))
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(mixed).reshape(1, -1), format="flt",
            layout=_LAYOUTS[self.out_channels])
        frame.sample_rate = self.in_rate
        return self._collect(self._swr.resample(frame) if self._swr else [])

    def flush(self) -> np.ndarray:
        """What the filter still holds, at the end of the stream."""
        if self._swr is None:
            return np.zeros((0, self.out_channels), np.float32)
        return self._collect(self._swr.resample(None))

    def _channels(self, pcm: np.ndarray) -> np.ndarray:
        if self.in_channels == self.out_channels:
            return pcm
        if self.out_channels == 2:
            return np.repeat(pcm, 2, axis=1)
        mono: np.ndarray = pcm.mean(axis=1, keepdims=True, dtype=np.float32)
        return mono

    def _collect(self, frames: list[av.AudioFrame]) -> np.ndarray:
        parts = [f.to_ndarray().reshape(-1, self.out_channels) for f in frames]
        if not parts:
            return np.zeros((0, self.out_channels), np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)
