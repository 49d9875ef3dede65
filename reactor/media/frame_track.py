"""Pictures from numpy, torch or a file as an aiortc video track, to send to a model.

:class:`FrameTrack` plays frames in real time at ``fps``: one array (a still picture,
sent until the track stops), a sequence of frames (``loop=True`` plays it again from its
start), an iterator or generator, or a callable ``source(n)`` asked for frame ``n``. A
frame is what ``Session.emit()`` takes: uint8 RGB ``(H, W, 3)`` or float ``(3, H, W)`` in
[0, 1], numpy or torch, or a block of them with a leading time axis. aiortc's sender
encodes them (H.264 or VP8, whichever the daemon answers).

:func:`file_track` plays a video file's picture through a :class:`FrameTrack`, looping
when asked. aiortc's ``MediaPlayer(path, loop=True)`` seeks back to the start, and its
frames' timestamps start again at zero: the RTP timestamps go back, and a receiver's
jitter buffer takes the second pass for late packets (the model saw no frame after the
first pass). Here the timestamps keep counting across passes.

Getting a frame from an iterator or a callable (a generator that renders, a file being
decoded) runs on a worker thread, so it never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from reactor.errors import FrameError
from reactor.model.frames import to_pipeline_frames

__all__ = ["FrameTrack", "file_track"]

#: The RTP clock of video, which pts are counted in.
VIDEO_CLOCK = 90_000


def _size_of(frame: Any) -> tuple[int, int]:
    """``(height, width)`` of a frame or block as ``emit()`` takes them."""
    shape = tuple(getattr(frame, "shape", ()))
    if len(shape) in (3, 4) and shape[-1] == 3:
        return int(shape[-3]), int(shape[-2])
    if len(shape) in (3, 4) and shape[-3] == 3:
        return int(shape[-2]), int(shape[-1])
    raise FrameError(f"FrameTrack: expected a frame shaped (H, W, 3) or (3, H, W), or a "
                     f"block of them, found {type(frame).__name__} shaped {shape}")


class FrameTrack(MediaStreamTrack):
    """A video track playing ``source`` in real time, at ``fps``.

    Args:
        source: one frame (sent again every frame interval); a sequence of frames (a list,
            or an array or tensor with a leading time axis); an iterator or generator of
            frames or blocks; or a callable taking the frame's number (0, 1, ...) and
            returning a frame, or ``None`` to end.
        fps: Frames per second.
        loop: Play a sequence again from its start when it ends (an iterator is played
            once; a callable and one frame never end).

    Every frame must have the first frame's size. The track ends (``recv`` raises aiortc's
    ``MediaStreamError``) when the source runs out; a frame of the wrong shape or dtype
    raises :class:`reactor.errors.FrameError` naming what was found.
    """

    kind = "video"

    def __init__(self, source: Any, fps: float = 30, *, loop: bool = False) -> None:
        super().__init__()
        if not fps > 0:
            raise ValueError(f"FrameTrack: fps must be positive, not {fps!r}")
        self.fps = fps
        self._next_block = self._blocks(source, loop)
        self._pending: list[np.ndarray] = []
        self._size: tuple[int, int] | None = None
        self._start: float | None = None
        self.frames_sent = 0
        self._time_base = fractions.Fraction(1, VIDEO_CLOCK)

    @staticmethod
    def _blocks(source: Any, loop: bool) -> Callable[[int], Any]:
        """What gives the next frame or block (``None``: the end), by frame number."""
        if callable(source) and not isinstance(source, np.ndarray):
            fn: Callable[[int], Any] = source
            return fn
        if isinstance(source, np.ndarray) or hasattr(source, "detach"):  # numpy, torch
            if source.ndim != 4:
                still = source
                return lambda _n: still
            source = list(source)  # a block: its frames, one by one
        if isinstance(source, Sequence):
            frames: Iterator[Any] = itertools.cycle(source) if loop else iter(source)
        elif isinstance(source, Iterable):
            frames = iter(source)
        else:
            raise TypeError(f"FrameTrack: source must be a frame, a sequence or iterator of "
                            f"frames, or a callable, not {type(source).__name__}")
        return lambda _n: next(frames, None)

    async def _next_frame(self) -> np.ndarray | None:
        while not self._pending:
            got = await asyncio.get_running_loop().run_in_executor(
                None, self._next_block, self.frames_sent)
            if got is None:
                return None
            if self._size is None:
                self._size = _size_of(got)
            block = to_pipeline_frames(got, *self._size)
            self._pending = list(block)
        return self._pending.pop(0)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        rgb = await self._next_frame()
        if rgb is None:
            self.stop()
            raise MediaStreamError
        # Real time: frame k goes out k / fps after the first.
        now = time.monotonic()
        if self._start is None:
            self._start = now
        wait = self._start + self.frames_sent / self.fps - now
        if wait > 0:
            await asyncio.sleep(wait)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = round(self.frames_sent * VIDEO_CLOCK / self.fps)
        frame.time_base = self._time_base
        self.frames_sent += 1
        return frame


def file_track(path: str | Path, *, loop: bool = False, fps: float | None = None) -> FrameTrack:
    """A :class:`FrameTrack` playing the picture of the video file at ``path`` in real time,
    at the file's own frame rate (or ``fps``); ``loop`` plays it again from the start when
    it ends, its timestamps going on. Raises ``FileNotFoundError`` or
    :class:`reactor.errors.FrameError` (not a video) at once, naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file_track: {path}: no such file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FrameError(f"file_track: {path} has no video stream")
            rate = container.streams.video[0].average_rate
    except av.FFmpegError as exc:
        raise FrameError(f"file_track: {path} is not a video file PyAV can read: {exc}") from None

    def frames() -> Iterator[np.ndarray]:
        while True:
            decoded = 0
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    decoded += 1
                    yield frame.to_ndarray(format="rgb24")
            if not loop or not decoded:
                return

    return FrameTrack(frames(), fps=fps or (float(rate) if rate else 30.0))
