"""The file source of ``reactor run``: decodes a video file into the input rings.

It stands where ingress stands in the daemon. Frames get ids 0, 1, 2… in file order (the
ids timed commands refer to). Without ``--lossless`` it plays the file in real time, at
``video.fps``, into the latest-frame ring, so a slow model drops frames as it would live;
with ``--lossless`` the ring blocks and the model sets the pace.

With ``audio.input`` on and a file that has sound, the sound goes to the ``audio_in`` ring
too, converted to ``audio.sample_rate`` and ``audio.channels`` in chunks of exactly 20 ms,
interleaved with the frames in file order (and, in real time, played at the file's pace;
with ``--lossless`` the sound's ring blocks too, so the model hears all of it).
Frames and sound share one clock: a frame or chunk ``t`` seconds into the file has
``pts`` = the time the run started + ``t``, so a model can pair ``chunk.time`` with
``session.input_time``.

``--duration S`` stops after ``S * fps`` frames and ``S`` seconds of sound. Without
``--input`` there is no file: :class:`ClockSource` only tells the supervisor how many
frames the model is to render.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import av
import numpy as np

from reactor.errors import ReactorError
from reactor.ipc import RingTimeout, ShmRing
from reactor.media.convert import frame_to_rgb
from reactor.media.resample import Resampler
from reactor.proto import worker_pb2 as wpb
from reactor.runtime.latency import LatencyWindow
from reactor.runtime.stats import ProcessStats
from reactor.workers.base import WorkerContext
from reactor.workers.stats import worker_stats

log = logging.getLogger(__name__)

#: One chunk of ``audio_in``: 20 ms.
CHUNK_NS = 20_000_000
#: In a lossless run, how long the source waits for the model to take a chunk of sound
#: (a model that never reads it would otherwise hold the frames up for ever).
SOUND_WAIT_S = 2.0


class FileSource:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        if not ctx.options.input:
            raise ReactorError("the file source needs a file: RunOptions.input is not set")
        self.path = Path(ctx.options.input)
        self.lossless = ctx.options.lossless
        fps = ctx.config.video.fps
        self.duration_s = ctx.options.duration_s
        self.max_frames = None if self.duration_s is None else round(self.duration_s * fps)
        self.input = ShmRing.attach(ctx.rings.input)
        self.live = threading.Event()
        self.frames_in = 0
        self.frames_out = 0
        self.chunks_out = 0
        self.finished = False
        self.lat_decode = LatencyWindow("decode")
        self.proc = ProcessStats()
        try:
            self.container = av.open(str(self.path))
            self.stream = self.container.streams.video[0]
        except (OSError, av.FFmpegError, IndexError) as exc:
            raise ReactorError(f"cannot read input video {self.path}: {exc}") from None
        self.sound: SoundIn | None = None
        self.sound_stream: av.audio.stream.AudioStream | None = None
        self.sound_ring: ShmRing | None = None
        if ctx.rings.audio_in is not None and self.container.streams.audio:
            a = ctx.config.audio
            self.sound = SoundIn(a.sample_rate, a.channels)
            self.sound_stream = self.container.streams.audio[0]
            self.sound_ring = ShmRing.attach(ctx.rings.audio_in)
        # Time 0 of the file: the earliest start of its streams (in seconds).
        start = self.container.start_time
        self.origin_s = start / av.time_base if start is not None else 0.0
        self.t0 = 0.0  # when playing started (time.monotonic)
        self.t0_ns = 0  # the same instant on the pts clock (time.perf_counter_ns)

    def stats(self) -> wpb.WorkerStats:
        return worker_stats(self.proc, self.frames_in, self.frames_out, (self.lat_decode,),
                            finished=self.finished)

    def on_message(self, msg: wpb.ToWorker) -> None:
        body = msg.WhichOneof("body")
        if body == "stop":
            self.ctx.stop.set()
        elif body == "event" and msg.event.kind == wpb.SessionEvent.STARTED:
            self.live.set()

    def run(self) -> None:
        while not self.live.wait(0.1):  # a block reader only sees frames after it joined
            if self.ctx.stop.is_set():
                return
        self.t0, self.t0_ns = time.monotonic(), time.perf_counter_ns()
        sound = self.sound
        streams: list[av.stream.Stream] = [self.stream]
        if self.sound_stream is not None:
            streams.append(self.sound_stream)
        video_done = False
        try:
            for packet in self.container.demux(*streams):
                if video_done and packet.stream is self.stream:
                    continue  # past --duration: only the sound up to it is still wanted
                for frame in packet.decode():
                    if self.ctx.stop.is_set():
                        return
                    if isinstance(frame, av.VideoFrame):
                        if not video_done and not self._video(frame):
                            return
                        video_done = video_done or self._video_full()
                    elif sound is not None and isinstance(frame, av.AudioFrame):
                        self._sound(sound.add(frame, self._file_time(frame)))
                if video_done and (sound is None or sound.done(self.duration_s)):
                    break
            if sound is not None:
                self._sound(sound.end())
        except av.FFmpegError as exc:
            log.warning("input %s ended early after %d frames: %s", self.path,
                        self.frames_out, exc)
        finally:
            self.container.close()
        self.finished = True
        log.info("input %s: %d frames written%s", self.path, self.frames_out,
                 f", {self.chunks_out * CHUNK_NS / 1e9:.2f} s of sound" if sound else "")

    def _file_time(self, frame: av.VideoFrame | av.AudioFrame) -> float | None:
        t = frame.time
        return None if t is None else t - self.origin_s

    def _video_full(self) -> bool:
        return self.max_frames is not None and self.frames_out >= self.max_frames

    def _video(self, frame: av.VideoFrame) -> bool:
        """Decode, pace and write one frame; False when stopped meanwhile."""
        v = self.ctx.config.video
        start = time.perf_counter_ns()
        self.frames_in += 1
        rgb = frame_to_rgb(frame, v.width, v.height)
        at = self._file_time(frame)
        if at is None:
            at = self.frames_out / v.fps
        if not self.lossless:
            # Without sound, frames play at video.fps whatever the file's rate (as
            # always); with sound, at the file's own pace, which the sound keeps.
            self._wait(at if self.sound is not None else self.frames_out / v.fps)
        pts = self.t0_ns + round(at * 1e9)
        while not self._write(rgb, start, pts):
            if self.ctx.stop.is_set():
                return False
        self.lat_decode.add((time.perf_counter_ns() - start) / 1e6)
        return True

    def _sound(self, chunks: list[tuple[np.ndarray, float, int]]) -> None:
        assert self.sound is not None and self.sound_ring is not None
        for pcm, at, length in chunks:
            if self.sound.finished:
                return
            if self.duration_s is not None and at >= self.duration_s - 1e-9:
                self.sound.finished = True
                return
            if not self.lossless:
                self._wait(at)
            pts = self.t0_ns + round(at * 1e9)
            try:
                # Lossless, the ring blocks: it waits for the model to take the sound.
                self.sound_ring.write(pcm, pts=pts, length=length, timeout=SOUND_WAIT_S)
            except RingTimeout:
                log.warning("the model took none of the input's sound for %g s; the rest "
                            "of it is dropped", SOUND_WAIT_S)
                self.sound.finished = True
                return
            self.chunks_out += 1

    def _wait(self, at: float) -> None:
        time.sleep(max(0.0, self.t0 + at - time.monotonic()))

    def _write(self, rgb: object, start: int, pts: int) -> bool:
        try:
            self.input.write(rgb, frame_id=self.frames_out, capture_ts=start, timeout=0.25,
                             pts=pts)
        except RingTimeout:
            return False
        self.frames_out += 1
        return True


class SoundIn:
    """A file's sound, converted to ``rate`` and ``channels`` and cut into 20 ms chunks
    laid end to end from the first sample's time in the file (float32, any decoded format
    and layout in; more than two channels are mixed down)."""

    def __init__(self, rate: int, channels: int) -> None:
        self.rate, self.channels = rate, channels
        self.step = rate * CHUNK_NS // 1_000_000_000
        self.start_s: float | None = None
        self.chunks = 0
        self.finished = False
        self._format: av.AudioResampler | None = None
        self._convert: Resampler | None = None
        self._in_channels = 1
        self._pending = np.zeros((0, channels), np.float32)

    def done(self, duration_s: float | None) -> bool:
        return self.finished or (duration_s is not None and self.start_s is not None
                                 and self.start_s + self.chunks * CHUNK_NS / 1e9 >= duration_s)

    def add(self, frame: av.AudioFrame, at: float | None) -> list[tuple[np.ndarray, float, int]]:
        """Take one decoded frame; return the whole chunks it completes as
        ``(pcm, seconds into the file, valid samples)``."""
        if self._convert is None:
            self._in_channels = 1 if frame.layout.nb_channels == 1 else 2
            # Packed float in mono or stereo at the file's own rate (any format, any
            # layout: more than two channels are mixed down), then the model's format.
            self._format = av.AudioResampler(
                format="flt", layout="mono" if self._in_channels == 1 else "stereo",
                rate=frame.sample_rate)
            self._convert = Resampler(frame.sample_rate, self._in_channels, self.rate,
                                      self.channels)
            self.start_s = max(0.0, at or 0.0)
        assert self._format is not None
        for f in self._format.resample(frame):
            self._push(self._convert(f.to_ndarray().reshape(-1, self._in_channels)))
        return self._chunks(final=False)

    def end(self) -> list[tuple[np.ndarray, float, int]]:
        """The rest, the last chunk padded with silence (its length says how much is sound)."""
        if self._convert is None or self._format is None:
            return []
        for f in self._format.resample(None):
            self._push(self._convert(f.to_ndarray().reshape(-1, self._in_channels)))
        self._push(self._convert.flush())
        return self._chunks(final=True)

    def _push(self, pcm: np.ndarray) -> None:
        if len(pcm):
            self._pending = np.concatenate([self._pending, pcm])

    def _chunks(self, *, final: bool) -> list[tuple[np.ndarray, float, int]]:
        out = []
        assert self.start_s is not None
        while len(self._pending) >= self.step or (final and len(self._pending)):
            part = self._pending[:self.step]
            self._pending = self._pending[self.step:]
            length = len(part)
            if length < self.step:
                part = np.concatenate(
                    [part, np.zeros((self.step - length, self.channels), np.float32)])
            at = self.start_s + self.chunks * CHUNK_NS / 1e9
            out.append((np.ascontiguousarray(part, np.float32), at, length))
            self.chunks += 1
        return out


class ClockSource:
    """``reactor run --duration S`` without ``--input``: no file, only the number of frames
    (``S * fps``) the model is to render, reported at once as written, so the run is done
    once the model has emitted that many and the sink has them."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        if ctx.options.duration_s is None:
            raise ReactorError("a run without --input needs --duration: RunOptions.duration_s "
                               "is not set")
        self.frames = round(ctx.options.duration_s * ctx.config.video.fps)
        self.live = threading.Event()
        self.finished = False
        self.proc = ProcessStats()

    def stats(self) -> wpb.WorkerStats:
        return worker_stats(self.proc, 0, self.frames if self.finished else 0, (),
                            finished=self.finished)

    def on_message(self, msg: wpb.ToWorker) -> None:
        body = msg.WhichOneof("body")
        if body == "stop":
            self.ctx.stop.set()
        elif body == "event" and msg.event.kind == wpb.SessionEvent.STARTED:
            self.live.set()

    def run(self) -> None:
        while not self.live.wait(0.1):
            if self.ctx.stop.is_set():
                return
        self.finished = True
        log.info("clock: the model is to render %d frames", self.frames)


def main(ctx: WorkerContext) -> None:
    source: FileSource | ClockSource
    if ctx.options.input:
        source = FileSource(ctx)
        path = str(source.path)
    else:
        source = ClockSource(ctx)
        path = ""
    ctx.attach(source).ready(wpb.Ready(source=wpb.SourceReady(path=path)))
    source.run()
    while not ctx.stop.wait(0.1):
        pass
