"""The model's sound out to WebRTC viewers: on the session clock, Opus-encoded once, fanned out.

The egress worker reads the ``audio_out`` ring: chunks of float32 ``(samples, channels)``
at ``audio.sample_rate``, each with the presentation time of its first sample (``pts``,
CLOCK_MONOTONIC ns; :mod:`reactor.model.audio`). Here that sound is

1. laid on a 48 kHz timeline (:class:`SendTimeline`) whose sample ``i`` sounds at
   ``epoch + i / 48000`` on the session clock (:class:`~reactor.media.clock.MediaClock`,
   the same epoch as the video's 90 kHz RTP clock). A chunk that continues the previous
   one (its pts within two samples of where that one ended) goes on at the running
   cursor, through one streaming :class:`~reactor.media.resample.Resampler` so the seams
   stay clean; any other chunk starts at its own pts, and what lies between is silence;
2. cut into 20 ms windows ``[k * 960, (k + 1) * 960)``. A window is sent as soon as its
   samples are complete (the cursor passed its end), but never more than one window
   ahead of real time (not before its start - 20 ms: a model that emits a second of
   sound at once is sent as it plays), or at its deadline (its end + 15 ms) with silence
   for what is missing: when the model sends nothing (no session, an inference restart), silence
   goes out all the same, so viewers' audio tracks stay up. Audio that arrives after its
   window went out, or more than 2 s ahead of now, is dropped and counted;
3. encoded once per window with libopus (:class:`OpusWindowEncoder`), whatever the number
   of viewers, and the same ``av.Packet`` handed to every viewer's
   :class:`EncodedAudioTrack`. aiortc's sender then only packetizes it
   (``OpusEncoder.pack``, aiortc 1.16 ``codecs/opus.py``: one packet, RTP timestamp =
   ``pts`` in 1/48000).

libopus delays its output by its lookahead (312 samples, 6.5 ms, in the ``audio``
application): the first packet of window ``k`` decodes to input samples from
``k * 960 - 312``. FFmpeg stamps packets with ``frame pts - initial padding``, which is
exactly where their decoded sound belongs, so packets keep the encoder's pts.

Costs (measured on a loaded 2-core VM, 48 kHz mono beside 720p30 video, one viewer):
encoding a 20 ms window takes 0.2-0.3 ms at complexity 8, whatever the number of viewers;
the audio thread as a whole (ring reads, timeline, encode, hand-off) about 3.5 % of a
core, and aiortc's sending of the packets about 1.3 % more on the event loop per viewer.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import logging
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from reactor.media.clock import MediaClock
from reactor.media.resample import OPUS_RATE, Resampler

log = logging.getLogger(__name__)

#: Samples in one Opus frame (20 ms at 48 kHz) and the windows the timeline is cut into.
WINDOW = 960
WINDOW_NS = 20_000_000
#: A window incomplete this long after its end is sent with silence for what is missing.
DEADLINE_NS = 15_000_000
#: A complete window is sent no earlier than this before its start. One window: sound
#: that comes with a frame (pts = now, 33 ms at 30 fps) goes out as it arrives, in one
#: wake-up, rather than window by window as each one's start comes.
LEAD_NS = WINDOW_NS
#: Sound further ahead of now than this is dropped: buffering is bounded.
MAX_AHEAD_NS = 2_000_000_000
#: A sender this far behind its windows (a stalled thread) skips to now, not bursting.
MAX_BEHIND_NS = 1_000_000_000
#: Chunks whose pts is within this many samples of the running cursor continue it.
SNAP_SAMPLES = 2

OPUS_TIME_BASE = fractions.Fraction(1, OPUS_RATE)
_LAYOUTS = {1: "mono", 2: "stereo"}


class OpusWindowEncoder:
    """libopus at 48 kHz, one 20 ms window in, one packet out (pts in 1/48000).

    ``application=audio`` (music and effects, not only speech), 20 ms frames, VBR.
    """

    def __init__(self, channels: int, bitrate_kbps: int) -> None:
        if channels not in _LAYOUTS:
            raise ValueError(f"Opus channels must be 1 or 2, found {channels}")
        ctx = av.CodecContext.create("libopus", "w")
        assert isinstance(ctx, av.AudioCodecContext)
        ctx.sample_rate = OPUS_RATE
        ctx.layout = _LAYOUTS[channels]
        ctx.format = "flt"
        ctx.time_base = OPUS_TIME_BASE
        ctx.bit_rate = bitrate_kbps * 1000
        # Complexity 8 of 10: half the CPU of the default, no audible difference.
        ctx.options = {"application": "audio", "frame_duration": "20", "vbr": "on",
                       "compression_level": "8"}
        ctx.open()
        self._ctx = ctx
        self.channels = channels
        self.bitrate_kbps = bitrate_kbps
        self.windows_encoded = 0
        self.bytes_out = 0

    def encode(self, pcm: np.ndarray, index: int) -> list[av.Packet[Any]]:
        """Encode float32 ``(960, channels)`` samples starting at timeline sample ``index``."""
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm, np.float32).reshape(1, -1), format="flt",
            layout=_LAYOUTS[self.channels])
        frame.sample_rate = OPUS_RATE
        frame.pts = index
        frame.time_base = OPUS_TIME_BASE
        packets = list(self._ctx.encode(frame))
        self.windows_encoded += 1
        for packet in packets:
            packet.time_base = OPUS_TIME_BASE
            self.bytes_out += packet.size
        return packets


@dataclass(frozen=True)
class Window:
    """One 20 ms window of the timeline, ready to encode."""

    index: int
    """Timeline sample of its first sample (a multiple of 960)."""
    pcm: np.ndarray
    """float32 ``(960, channels)``."""
    silent: bool
    """Nothing at all was written into it (pure silence fill)."""
    complete: bool
    """All its samples had arrived (it was not sent at its deadline with a gap)."""


class SendTimeline:
    """The model's sound on the 48 kHz send timeline, cut into 20 ms windows (see the
    module docstring). Not thread-safe: one thread calls :meth:`add` and :meth:`due`."""

    def __init__(self, clock: MediaClock, channels: int, in_rate: int, in_channels: int,
                 *, deadline_ns: int = DEADLINE_NS, max_ahead_ns: int = MAX_AHEAD_NS,
                 lead_ns: int = LEAD_NS) -> None:
        if clock.rate != OPUS_RATE:
            raise ValueError(f"the send timeline runs at {OPUS_RATE} Hz, not {clock.rate}")
        self.clock = clock
        self.channels = channels
        self.in_rate, self.in_channels = in_rate, in_channels
        self.deadline_ns = deadline_ns
        self.max_ahead_ns = max_ahead_ns
        self.lead_ns = lead_ns
        self._resampler = Resampler(in_rate, in_channels, OPUS_RATE, channels)
        self._windows: dict[int, np.ndarray] = {}
        #: The first window not yet sent (``None`` until the first call).
        self.next_window: int | None = None
        #: Where the next continuous sample goes (timeline sample), ``None`` before any.
        self.cursor: int | None = None
        # The input stream's own position, to tell a continuation from a jump exactly:
        # its start pts and the input samples since.
        self._in_origin_ns = 0
        self._in_samples = 0
        self.chunks_in = 0
        self.samples_in = 0
        self.chunks_late = 0
        self.samples_late = 0
        self.chunks_ahead = 0
        self.samples_ahead = 0
        self.windows_out = 0
        self.windows_silent = 0
        self.windows_partial = 0
        self.windows_skipped = 0

    def _start(self, now_ns: int) -> int:
        if self.next_window is None:
            self.next_window = self.clock.rtp(now_ns) // WINDOW
        return self.next_window

    def add(self, pcm: np.ndarray, pts_ns: int, now_ns: int) -> None:
        """Place float32 ``(samples, in_channels)`` at ``in_rate`` that sound from ``pts_ns``."""
        self._start(now_ns)
        self.chunks_in += 1
        if not len(pcm):
            return
        expected = self._in_origin_ns + self._in_samples * 1_000_000_000 // self.in_rate
        snap_ns = SNAP_SAMPLES * 1_000_000_000 // self.in_rate
        if self.cursor is not None and abs(pts_ns - expected) <= snap_ns:
            self._in_samples += len(pcm)
            self._write(self._resampler(pcm), self.cursor, now_ns)
            return
        # A jump (or the first chunk): what the filter still holds ends the old stretch,
        # the new one starts at its own time with a fresh filter.
        if self.cursor is not None:
            tail = self._resampler.flush()
            if len(tail):
                self._write(tail, self.cursor, now_ns, count=False)
            self._resampler = Resampler(self.in_rate, self.in_channels, OPUS_RATE,
                                        self.channels)
        self._in_origin_ns, self._in_samples = pts_ns, len(pcm)
        self._write(self._resampler(pcm), self.clock.rtp(pts_ns), now_ns)

    def _write(self, out: np.ndarray, start: int, now_ns: int, *, count: bool = True) -> None:
        end = start + len(out)
        self.cursor = end
        if count:
            self.samples_in += len(out)
        base = (self.next_window or 0) * WINDOW
        if start < base:  # its window already went out (as silence, or with older sound)
            late = min(end, base) - start
            self.samples_late += late
            self.chunks_late += count
            out, start = out[late:], base
        limit = self.clock.rtp(now_ns + self.max_ahead_ns)
        if end > limit:
            ahead = min(end - limit, len(out))
            self.samples_ahead += ahead
            self.chunks_ahead += count
            out = out[:len(out) - ahead]
        at = 0
        while at < len(out):
            k, offset = divmod(start + at, WINDOW)
            n = min(WINDOW - offset, len(out) - at)
            window = self._windows.get(k)
            if window is None:
                window = self._windows[k] = np.zeros((WINDOW, self.channels), np.float32)
            window[offset:offset + n] = out[at:at + n]
            at += n

    def window_start_ns(self, k: int) -> int:
        return self.clock.time_ns(k * WINDOW)

    def due(self, now_ns: int) -> list[Window]:
        """The windows to send now, oldest first (see the module docstring)."""
        k = self._start(now_ns)
        if now_ns - self.window_start_ns(k + 1) > MAX_BEHIND_NS:
            # The thread was held up for a long time: skip to now rather than burst.
            now_k = self.clock.rtp(now_ns - self.deadline_ns) // WINDOW - 1
            for stale in [w for w in self._windows if w < now_k]:
                del self._windows[stale]
            self.windows_skipped += now_k - k
            k = self.next_window = now_k
        ready: list[Window] = []
        while True:
            start, end = self.window_start_ns(k), self.window_start_ns(k + 1)
            complete = self.cursor is not None and self.cursor >= (k + 1) * WINDOW
            if not ((complete and now_ns >= start - self.lead_ns)
                    or now_ns >= end + self.deadline_ns):
                break
            pcm = self._windows.pop(k, None)
            silent = pcm is None
            if pcm is None:
                pcm = np.zeros((WINDOW, self.channels), np.float32)
            ready.append(Window(k * WINDOW, pcm, silent, complete))
            self.windows_out += 1
            self.windows_silent += silent
            self.windows_partial += not complete and not silent
            k += 1
        self.next_window = k
        return ready

    def next_due_ns(self, now_ns: int) -> int:
        """When :meth:`due` will next return a window (if no sound arrives before)."""
        k = self._start(now_ns)
        if self.cursor is not None and self.cursor >= (k + 1) * WINDOW:
            return max(now_ns, self.window_start_ns(k) - self.lead_ns)
        return self.window_start_ns(k + 1) + self.deadline_ns


class EncodedAudioTrack(MediaStreamTrack):
    """An audio track whose ``recv()`` returns pre-encoded Opus ``av.Packet``\\ s.

    Packets are queued by :meth:`deliver` (event loop thread). At most ``queue_size``
    wait (200 ms by default): a viewer that falls further behind loses the oldest (Opus
    packets decode on their own), so it is never buffered without bound. ``media_clock``
    (48 kHz) is the clock the packets' pts are read on, for sender reports.
    """

    kind = "audio"

    def __init__(self, media_clock: MediaClock | None = None, *, queue_size: int = 10) -> None:
        super().__init__()
        self.media_clock = media_clock
        self.queue_size = queue_size
        self.sent = 0
        self.dropped = 0
        self._queue: collections.deque[av.Packet[Any]] = collections.deque()
        self._ready = asyncio.Event()

    def deliver(self, packet: av.Packet[Any]) -> None:
        """Queue one packet for this viewer (event loop thread only)."""
        if self.readyState != "live":
            return
        if len(self._queue) >= self.queue_size:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(packet)
        self._ready.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def recv(self) -> av.Packet[Any]:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        self.sent += 1
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        self._queue.clear()
        self._ready.set()  # wake recv() so the sender sees MediaStreamError and exits


@dataclass(frozen=True)
class AudioStats:
    """What :meth:`AudioBroadcaster.stats` reports."""

    chunks_in: int
    """Chunks read from the ``audio_out`` ring."""
    samples_in: int
    """Their samples, at 48 kHz (after resampling)."""
    samples_out: int
    """Samples sent (960 per window, sound or silence)."""
    windows_out: int
    """20 ms windows sent (encoded once each while anyone listens)."""
    windows_encoded: int
    windows_silent: int
    """Windows sent with no sound at all (nothing came for them)."""
    windows_partial: int
    """Windows sent at their deadline with part of their sound missing."""
    chunks_dropped: int
    """Chunks (partly) dropped: late (their window had gone out) or > 2 s ahead."""
    chunks_late: int
    chunks_ahead: int
    samples_dropped: int
    """48 kHz samples dropped, late or ahead."""
    viewers: int
    packets_dropped: int
    """Packets viewers lost to a full queue (they fell behind)."""
    av_offset_ms: float | None
    """Median over the last video frames sent of (end of the newest audio window sent)
    - (that frame's pts): how far the audio on the wire runs ahead (+) of the video."""
    av_offset_last_ms: float | None
    encode_ms: float
    """Mean time to encode one window."""


class AudioBroadcaster:
    """The egress audio side: one :class:`SendTimeline`, one :class:`OpusWindowEncoder`,
    any number of :class:`EncodedAudioTrack` viewers.

    Threads: :meth:`add_viewer` / :meth:`remove_viewer` on the event loop thread;
    :meth:`feed` and :meth:`pump` on one audio thread (the egress worker's audio reader),
    which encodes and hands the packets to the loop; :meth:`note_video` from the video
    reader thread.
    """

    def __init__(self, clock: MediaClock, *, sample_rate: int, channels: int,
                 bitrate_kbps: int | None = None, queue_size: int = 10) -> None:
        self.clock = clock.with_rate(OPUS_RATE)
        self.channels = channels
        self.timeline = SendTimeline(self.clock, channels, sample_rate, channels)
        self.encoder = OpusWindowEncoder(channels, bitrate_kbps or 48 * channels)
        self.queue_size = queue_size
        self._viewers: list[EncodedAudioTrack] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._packets_dropped_gone = 0
        self._encode_ns = 0
        self._sent_until_ns: int | None = None
        self._offsets: collections.deque[float] = collections.deque(maxlen=300)

    @property
    def viewers(self) -> list[EncodedAudioTrack]:
        with self._lock:
            return list(self._viewers)

    def add_viewer(self) -> EncodedAudioTrack:
        """A new track for one viewer; add it to that viewer's peer connection."""
        self._loop = asyncio.get_running_loop()
        track = EncodedAudioTrack(self.clock, queue_size=self.queue_size)
        track.on("ended", lambda: self.remove_viewer(track))
        with self._lock:
            self._viewers.append(track)
        return track

    def remove_viewer(self, track: EncodedAudioTrack) -> None:
        with self._lock:
            if track in self._viewers:
                self._viewers.remove(track)
                self._packets_dropped_gone += track.dropped
        if track.readyState == "live":
            track.stop()

    def feed(self, pcm: np.ndarray, pts_ns: int, now_ns: int | None = None) -> None:
        """Sound from the model: float32 ``(samples, channels)`` at the model's rate."""
        self.timeline.add(pcm, pts_ns, time.perf_counter_ns() if now_ns is None else now_ns)

    def pump(self, now_ns: int | None = None) -> list[tuple[Window, list[av.Packet[Any]]]]:
        """Send every window that is due: encoded once if anyone listens, to everyone.
        Returns the windows and their packets (for a recorder)."""
        now = time.perf_counter_ns() if now_ns is None else now_ns
        sent: list[tuple[Window, list[av.Packet[Any]]]] = []
        with self._lock:
            listening = bool(self._viewers)
        for window in self.timeline.due(now):
            packets: list[av.Packet[Any]] = []
            if listening:
                t0 = time.perf_counter_ns()
                packets = self.encoder.encode(window.pcm, window.index)
                self._encode_ns += time.perf_counter_ns() - t0
                if packets:
                    self._dispatch(packets)
            self._sent_until_ns = self.clock.time_ns(window.index + WINDOW)
            sent.append((window, packets))
        return sent

    def next_due_ns(self, now_ns: int | None = None) -> int:
        return self.timeline.next_due_ns(time.perf_counter_ns() if now_ns is None else now_ns)

    def note_video(self, pts_ns: int) -> None:
        """A video frame of presentation time ``pts_ns`` was just sent: sample the offset."""
        audio = self._sent_until_ns
        if audio is not None:
            self._offsets.append((audio - pts_ns) / 1e6)

    def _dispatch(self, packets: list[av.Packet[Any]]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._deliver, packets)
        except RuntimeError:  # the loop closed meanwhile (egress stopping)
            pass

    def _deliver(self, packets: list[av.Packet[Any]]) -> None:
        for track in self.viewers:
            for packet in packets:
                track.deliver(packet)

    def stats(self) -> AudioStats:
        t = self.timeline
        viewers = self.viewers
        offsets = list(self._offsets)
        encoded = self.encoder.windows_encoded
        return AudioStats(
            chunks_in=t.chunks_in,
            samples_in=t.samples_in,
            samples_out=t.windows_out * WINDOW,
            windows_out=t.windows_out,
            windows_encoded=encoded,
            windows_silent=t.windows_silent,
            windows_partial=t.windows_partial,
            chunks_dropped=t.chunks_late + t.chunks_ahead,
            chunks_late=t.chunks_late,
            chunks_ahead=t.chunks_ahead,
            samples_dropped=t.samples_late + t.samples_ahead,
            viewers=len(viewers),
            packets_dropped=self._packets_dropped_gone + sum(v.dropped for v in viewers),
            av_offset_ms=statistics.median(offsets) if offsets else None,
            av_offset_last_ms=offsets[-1] if offsets else None,
            encode_ms=self._encode_ns / encoded / 1e6 if encoded else 0.0,
        )

    def close(self) -> None:
        for track in self.viewers:
            self.remove_viewer(track)
