"""The inference worker's ``SessionIO``: a session's frames and sound over the rings.

:class:`RingIO` is what a model's `Session` talks to inside the daemon (and ``reactor
run``): it reads input frames and the clients' sound, writes frames and sound out with
their presentation times, and paces a generative model. Its worker
(:class:`reactor.workers.inference.InferenceWorker`) owns the rings and the counters;
it runs on the worker's model thread, the counters' one writer.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from reactor.errors import ReactorError, SessionStopped
from reactor.ipc import CudaRing, RingTimeout
from reactor.ipc.errors import ProducerGoneError
from reactor.model import PendingCommand
from reactor.proto import worker_pb2 as wpb

if TYPE_CHECKING:
    from reactor.workers.inference import InferenceWorker

#: An input audio chunk older than this (its pts against now) is skipped when a newer one
#: is waiting: a model that fell behind hears the newest sound, as it sees the newest
#: frame. Ingress stamps sound ~80 ms before it hands it over (aiortc's audio buffer).
AUDIO_STALE_S = 0.3


class DeviceUpload:
    """Input frames to one CUDA device through one pinned host buffer.

    The copy up is asynchronous on the current stream; the model's work on the frame is
    queued behind it on the same stream, so nothing waits for the device except the next
    frame's write into the pinned buffer, which waits for the previous copy out of it.
    One device buffer: the frame is valid until the next one, as ``inputs()`` promises.
    """

    def __init__(self, device: int) -> None:
        import torch

        self._torch = torch
        self._device = torch.device("cuda", device)
        self._pinned: Any = None
        self._frame: Any = None
        self._done: Any = torch.cuda.Event()  # type: ignore[no-untyped-call]

    def put(self, array: np.ndarray) -> Any:
        torch = self._torch
        if self._pinned is None or tuple(self._pinned.shape) != array.shape:
            self._pinned = torch.empty(array.shape, dtype=torch.uint8, pin_memory=True)
            self._frame = torch.empty(array.shape, dtype=torch.uint8, device=self._device)
        else:
            self._done.synchronize()  # the last copy up has left the pinned buffer
        self._pinned.numpy()[...] = array
        with torch.cuda.device(self._device):
            self._frame.copy_(self._pinned, non_blocking=True)
            self._done.record()
        return self._frame


class RingIO:
    """A ``SessionIO`` over the frame and audio rings, for one session.

    The session clock is the wall clock (CLOCK_MONOTONIC ns), except in a file run
    (``reactor run``), where frame ``n`` is presented at ``start_ns + n / fps`` whatever
    the model's speed, so the file's picture and sound line up however long it took.
    """

    def __init__(self, worker: InferenceWorker, session_id: str, session_no: int) -> None:
        self.w = worker
        #: The output ring is on a GPU: ``Session.emit()`` hands CUDA tensors over as they
        #: are (a device-to-device copy into the ring's slot on the model's stream).
        self.device_output = isinstance(worker.output, CudaRing)
        self._upload = (DeviceUpload(worker.input_device)
                        if worker.input_device is not None else None)
        self.session_id = session_id
        self.session_no = session_no
        self.stop = threading.Event()
        self.used_inputs = False
        self.start_ns = time.perf_counter_ns()
        self.realtime = not worker.headless
        self._t0 = self.start_ns
        self._n = 0
        self._frames = 0
        self._capture_ts: int | None = None
        self._input_pts: int | None = None
        self._input_at = 0
        self.stop_reason = ""
        # While the model's own code runs this holds when it got control back; None while
        # the runtime waits for input or for ring space (not the model's fault).
        self.in_model_since: float | None = time.monotonic()
        self.stop_seen: float | None = None  # when the watchdog first saw the stop

    def read_input(self, timeout: float) -> Any:
        """The newest input frame (a view of the ring's slot, or with ``device: cuda`` a
        device tensor: see :class:`DeviceUpload`), or ``None``."""
        self.in_model_since = None
        self.used_inputs = True
        counters = self.w.counters
        counters.waiting_for_input()
        frame = None
        try:
            frame = self.w.input_reader.read(timeout)
        except ProducerGoneError:
            # Ingress died (the supervisor restarts it): no input until it is back, which
            # is not the model's fault, so the session waits instead of failing.
            time.sleep(timeout)
        finally:
            now_ns = time.perf_counter_ns()
            # The frame is counted as the wait ends, in one step (see Counters).
            counters.input_read(None if frame is None else (now_ns - frame.enqueue_ts) / 1e6)
        self.in_model_since = time.monotonic()
        if frame is None:
            return None
        self.w.schedule(frame.frame_id)
        self._capture_ts = frame.capture_ts
        self._input_pts = frame.pts
        self._input_at = now_ns
        if self._upload is not None:
            return self._upload.put(frame.array)
        return frame.array

    def input_pts(self) -> int | None:
        return self._input_pts

    def clock_ns(self) -> int:
        if self.realtime:
            return time.perf_counter_ns()
        return self.start_ns + self._frames * 1_000_000_000 // self.w.fps

    def write_output(self, frames: np.ndarray) -> int:
        w = self.w
        first = 0
        for i, f in enumerate(frames):
            # A paced model's frame is presented when it is due, a filter's when it is
            # published, a file run's at n / fps: pts None means "now" to the ring.
            pts = None if self.realtime else self.clock_ns()
            if not self.used_inputs and self.realtime:
                pts = self._pace()
            self.in_model_since = None
            now_ns = time.perf_counter_ns()
            model_ms = (now_ns - self._input_at) / 1e6 if self._input_at else None
            while True:
                if self.stopping():
                    raise SessionStopped(f"session {self.session_id} has ended")
                try:
                    w.output.write(f, frame_id=w.counters.frames_out,
                                   capture_ts=self._capture_ts,
                                   session_id=self.session_no, timeout=0.25, pts=pts)
                    break
                except RingTimeout:
                    continue  # egress is behind (or restarting): wait, but keep checking stop
            if i == 0:
                # Live, a frame is presented when it is published (microseconds ago).
                first = time.perf_counter_ns() if pts is None else pts
            self._frames += 1
            w.counters.frame_written(model_ms)
            if not self.used_inputs:
                w.schedule(w.counters.frames_out)
            self.in_model_since = time.monotonic()
        return first

    def write_audio(self, pcm: np.ndarray, pts_ns: int) -> None:
        ring = self.w.audio_out
        if ring is None:
            raise ReactorError("the daemon has no audio output ring (audio.output is off)")
        step = ring.shape[0]
        rate = self.w.config.audio.sample_rate
        self.w.counters.audio_written(len(pcm))
        for at in range(0, len(pcm), step):
            part = pcm[at:at + step]
            slot = np.zeros(ring.shape, np.float32) if len(part) < step else part
            if len(part) < step:
                slot[:len(part)] = part
            pts = pts_ns + at * 1_000_000_000 // rate
            while True:
                if self.stopping():
                    raise SessionStopped(f"session {self.session_id} has ended")
                try:
                    ring.write(slot, session_id=self.session_no, timeout=0.25, pts=pts,
                               length=len(part))
                    break
                except RingTimeout:
                    continue  # egress is behind (or restarting)

    def read_audio(self, timeout: float) -> tuple[np.ndarray, int] | None:
        reader = self.w.audio_in_reader
        if reader is None:
            raise ReactorError("the daemon has no audio input ring (audio.input is off)")
        self.in_model_since = None
        stale = 0
        try:
            chunk = reader.read(timeout)
            # Newest first when behind: chunks queued longer than AUDIO_STALE_S go
            # (counted), down to the first fresh one or the last one there is.
            while (chunk is not None and self.realtime
                   and time.perf_counter_ns() - chunk.pts > AUDIO_STALE_S * 1e9):
                newer = reader.read(0)
                if newer is None:
                    break
                stale += 1
                chunk = newer
        except ProducerGoneError:
            time.sleep(timeout)
            chunk = None
        self.in_model_since = time.monotonic()
        self.w.counters.audio_read(0 if chunk is None else chunk.length or len(chunk.array),
                                   stale)
        if chunk is None:
            return None
        samples = np.array(chunk.array[:chunk.length or None])
        pts = chunk.pts
        chunk.release()
        return samples, pts

    def _pace(self) -> int:
        """Hold a generative model to ``video.fps`` so the output ring stays near empty
        (a full ring is latency: every queued frame delays a command's visible effect).

        Returns the frame's due time, its presentation time: on a steady schedule, so the
        sound laid end to end beside the frames stays with them however the sleeps jitter.
        """
        self._n += 1
        due = self._t0 + self._n * 1_000_000_000 // self.w.fps
        now = time.perf_counter_ns()
        if due > now:
            self.in_model_since = None
            time.sleep((due - now) / 1e9)
        elif now - due > 2_000_000_000 // self.w.fps:
            self._t0, self._n = now, 0  # fell behind: do not try to catch up in a burst
            return now
        return due

    def poll_commands(self) -> list[PendingCommand]:
        return self.w.drain_commands()

    def stopping(self) -> bool:
        return self.stop.is_set() or self.w.ctx.stop.is_set()

    def send(self, message: Any) -> None:
        self.w.event(wpb.SessionEvent.MESSAGE, self.session_id, json_body=json.dumps(message))
