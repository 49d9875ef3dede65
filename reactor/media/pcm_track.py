"""Sound from numpy as an aiortc audio track, to send to a model that listens.

:class:`PcmTrack` plays an array, or the chunks a generator yields, in real time as
20 ms ``av.AudioFrame`` s (s16 stereo at the track's rate; mono is copied into both
channels, since aiortc's Opus encoder would otherwise upmix it 3 dB quieter); aiortc's
sender encodes them to Opus (resampling to 48 kHz). For a file's sound, use aiortc's own
``aiortc.contrib.media.MediaPlayer(path).audio`` instead.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import time
from collections.abc import Iterable, Iterator
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from reactor.model.audio import to_pcm

__all__ = ["PcmTrack"]

_LAYOUTS = {1: "mono", 2: "stereo"}


class PcmTrack(MediaStreamTrack):
    """An audio track playing ``source`` in real time, 20 ms per frame.

    Args:
        source: float samples in [-1, 1] or int16, shaped ``(samples,)`` (mono) or
            ``(samples, channels)``, numpy or torch: one array, or an iterable (a
            generator) of such chunks of any length, played one after the other.
        sample_rate: The rate of ``source``, in Hz.
        channels: 1 or 2.
        loop: Play an array again from its start when it ends (an iterable is
            played once).

    The track ends (``recv`` raises aiortc's ``MediaStreamError``) when the source runs
    out; a last partial frame is padded with silence. A chunk of the wrong shape or with
    non-finite samples raises :class:`reactor.errors.AudioError` naming what was given.
    """

    kind = "audio"

    def __init__(self, source: Any, sample_rate: int = 48_000, channels: int = 1, *,
                 loop: bool = False) -> None:
        super().__init__()
        if channels not in _LAYOUTS:
            raise ValueError(f"PcmTrack: channels must be 1 or 2, not {channels!r}")
        if sample_rate <= 0 or sample_rate % 50:
            raise ValueError(f"PcmTrack: sample_rate must be a positive multiple of 50 Hz "
                             f"(whole 20 ms frames), not {sample_rate!r}")
        self.sample_rate, self.channels = sample_rate, channels
        self.samples_per_frame = sample_rate // 50
        self._chunks = self._iterate(source, loop)
        self._pending = np.zeros((0, channels), np.float32)
        self._sent = 0
        self._start: float | None = None
        self._time_base = fractions.Fraction(1, sample_rate)

    @staticmethod
    def _iterate(source: Any, loop: bool) -> Iterator[Any]:
        if isinstance(source, np.ndarray) or hasattr(source, "detach"):
            return itertools.repeat(source) if loop else iter((source,))
        if isinstance(source, Iterable):
            return iter(source)
        raise TypeError(f"PcmTrack: source must be an array or an iterable of arrays, "
                        f"not {type(source).__name__}")

    def _next_samples(self) -> np.ndarray | None:
        n = self.samples_per_frame
        while len(self._pending) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                if not len(self._pending):
                    return None
                pad = np.zeros((n - len(self._pending), self.channels), np.float32)
                self._pending = np.concatenate([self._pending, pad])
                break
            pcm = to_pcm(chunk, self.channels, what="PcmTrack source")
            if len(pcm) and not len(self._pending) and len(pcm) >= n:
                self._pending = pcm
            else:
                self._pending = np.concatenate([self._pending, pcm])
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pcm = self._next_samples()
        if pcm is None:
            self.stop()
            raise MediaStreamError
        # Real time: frame k goes out k * 20 ms after the first.
        now = time.monotonic()
        if self._start is None:
            self._start = now
        wait = self._start + self._sent / self.sample_rate - now
        if wait > 0:
            await asyncio.sleep(wait)
        if self.channels == 1:
            pcm = np.repeat(pcm, 2, axis=1)
        s16 = (np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(s16.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = self.sample_rate
        frame.pts = self._sent
        frame.time_base = self._time_base
        self._sent += len(pcm)
        return frame
