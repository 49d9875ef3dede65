"""The egress worker: reads the output ring, encodes each frame once, fans it out.

Threads: the asyncio event loop (this process's main thread) owns the WHEP viewers' peer
connections; the *reader thread* takes frames from the output ring and pushes them
through the :class:`~reactor.media.tracks.Broadcaster`, which encodes each frame once per
codec and rendition in use (PyAV releases the GIL while it encodes) and hands the same
packets to every viewer of a rendition on the loop; the link thread relays WHEP offers
and session events to the loop.
With ``audio.output`` on, the *audio thread* reads the ``audio_out`` ring and drives the
:class:`~reactor.media.audio.AudioBroadcaster`: the model's sound on a 48 kHz timeline,
one Opus packet per 20 ms window for every viewer, silence when the model sends none.

One session clock (:class:`~reactor.media.clock.MediaClock`): a frame's RTP timestamp is
its presentation time (``frame.pts``, CLOCK_MONOTONIC ns) since this process's epoch, at
90 kHz; an audio sample's is its presentation time since the same epoch, at 48 kHz; the
RTCP sender reports map both to NTP by that clock, so receivers play them in sync.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

from reactor.control.status import FRAME_INTERVAL
from reactor.errors import ReactorError
from reactor.ipc import CudaRing, ProducerGoneError, Reader, RingClosedError, ShmRing
from reactor.ipc.cuda_ring import attach_ring
from reactor.media import ports
from reactor.media.audio import AudioBroadcaster
from reactor.media.bwe import RateChange
from reactor.media.clock import MediaClock
from reactor.media.gpu import gpu_plan
from reactor.media.peer import install_patches
from reactor.media.playout import answer_playout_delay
from reactor.media.tracks import Broadcaster, LadderRateChange, Switch
from reactor.proto import control_pb2 as cpb
from reactor.proto import worker_pb2 as wpb
from reactor.runtime.latency import LatencyWindow
from reactor.runtime.stats import ProcessStats
from reactor.workers.base import WorkerContext
from reactor.workers.gpu_reader import PlanesReader
from reactor.workers.recording import open_recorder
from reactor.workers.stats import worker_stats
from reactor.workers.viewers import ViewerHub

log = logging.getLogger(__name__)

RTP_CLOCK = 90_000


def rate_event(change: RateChange) -> wpb.SessionEvent:
    """The ``viewer`` session event telling clients the viewers of ``change.codec`` were
    switched down or up; the supervisor fills in the session (egress does not track it)."""
    way = "down" if change.to_kbps < change.from_kbps else "up"
    rendition = change.rendition if isinstance(change, LadderRateChange) else None
    body: dict[str, object] = {
        "state": way, "why": "estimate", "codec": change.codec,
        "from_kbps": change.from_kbps, "to_kbps": change.to_kbps,
        "viewers": list(change.viewers), "lowest": change.lowest}
    at = ""
    if rendition is not None:  # one rung of the ladder (egress.renditions)
        body.update(rendition=rendition.index, width=rendition.width,
                    height=rendition.height)
        at = f" {rendition.size}"
    return wpb.SessionEvent(
        kind=wpb.SessionEvent.VIEWER,
        reason=(f"{change.codec}{at} viewers switched {way} from {change.from_kbps} to "
                f"{change.to_kbps} kbps (the lowest estimate)"),
        json=json.dumps(body))


def switch_event(switch: Switch) -> wpb.SessionEvent:
    """The ``viewer`` session event telling clients one viewer was switched to another
    rendition (``"change": "rendition"``): its resolution, from and to; the frame rate
    stays (reactor.media.ladder)."""
    src, dst = switch.src, switch.dst
    return wpb.SessionEvent(
        kind=wpb.SessionEvent.VIEWER,
        reason=(f"viewer {switch.viewer} switched {switch.way} from {src.size} to "
                f"{dst.size} ({switch.why}, estimate {switch.estimate_kbps:.0f} kbps)"),
        json=json.dumps({
            "state": switch.way, "change": "rendition", "why": switch.why,
            "viewer": switch.viewer, "codec": switch.codec,
            "estimate_kbps": round(switch.estimate_kbps),
            "from": {"rendition": src.index, "width": src.width, "height": src.height,
                     "max_kbps": src.top_kbps},
            "to": {"rendition": dst.index, "width": dst.width, "height": dst.height,
                   "max_kbps": dst.top_kbps}}))


class EgressWorker:
    def __init__(self, ctx: WorkerContext, loop: asyncio.AbstractEventLoop) -> None:
        self.ctx = ctx
        self.loop = loop
        cfg = ctx.config
        self.gpu = gpu_plan(ctx.options.gpu, cfg.device)
        self.output = attach_ring(ctx.rings.output)
        # The GPU path's reader converts colour on the device and hands out I420 pictures.
        self.reader: Reader | PlanesReader = (PlanesReader(self.output)
                                              if isinstance(self.output, CudaRing)
                                              else self.output.reader())
        #: RTP time 0 of every stream this process sends (see the module docstring).
        self.clock = MediaClock(time.perf_counter_ns(), RTP_CLOCK)
        self.broadcaster = Broadcaster(
            cfg.video.width, cfg.video.height, fps=cfg.video.fps,
            bitrate_kbps=cfg.egress.top_bitrate_kbps,
            # egress.adapt: the encoder follows the viewers' estimates (reactor.media.bwe).
            min_bitrate_kbps=cfg.egress.min_bitrate_kbps if cfg.egress.adapt else None,
            start_bitrate_kbps=cfg.egress.start_bitrate_kbps,
            renditions=cfg.egress.ladder,
            hardware=self.gpu.encoder == "h264_nvenc",
            clock=self.clock, on_sent=self._sent, on_rate=self._rate_changed,
            on_switch=self._switched,
            intra_refresh=cfg.egress.intra_refresh,
        )
        self.audio: AudioBroadcaster | None = None
        self.audio_ring: ShmRing | None = None
        self.audio_reader: Reader | None = None
        if cfg.audio.output:
            self.audio = AudioBroadcaster(self.clock, sample_rate=cfg.audio.sample_rate,
                                          channels=cfg.audio.channels)
            if ctx.rings.audio_out is not None:
                self.audio_ring = ShmRing.attach(ctx.rings.audio_out)
                self.audio_reader = self.audio_ring.reader()
        self.hub = ViewerHub(self.broadcaster, cfg,
                             on_count=lambda n: ctx.link.clients(viewers=n), audio=self.audio)
        self._last_pts = -1
        # egress.record muxes the live H.264 packets (one encoder for viewers and file):
        # the hold keeps that encoder running while nobody watches in H.264.
        self.recorder = open_recorder(cfg, encode=False) if cfg.egress.record else None
        if self.recorder is not None:
            self.broadcaster.hold("h264")
        self.frames_in = 0
        self.frames_out = 0
        self.lat_ring = LatencyWindow("output_ring")
        self.lat_encode = LatencyWindow("encode")
        self.lat_send = LatencyWindow("send")
        #: Between two frames handed to the viewers (the reader thread's pace, not a
        #: stage of a frame's latency): what smoothness at egress is judged on.
        self.lat_interval = LatencyWindow(FRAME_INTERVAL)
        self._handed_ns = 0
        self.proc = ProcessStats()
        self.failure = ""

    def stats(self) -> wpb.WorkerStats:
        a = self.audio.stats() if self.audio is not None else None
        stats = worker_stats(self.proc, self.frames_in, self.frames_out,
                             (self.lat_ring, self.lat_encode, self.lat_send,
                              self.lat_interval),
                             viewers=self.hub.count,
                             encoders_active=self.broadcaster.encoders_active,
                             audio_samples_in=a.samples_in if a else 0,
                             audio_samples_out=a.samples_out if a else 0,
                             audio_dropped=a.chunks_dropped if a else 0,
                             av_offset_ms=a.av_offset_ms if a else None,
                             frames_dropped_viewers=self.broadcaster.packets_dropped)
        # On the link thread: viewer_stats copies the hub's dicts before reading them.
        stats.viewer_stats.extend(self.hub.viewer_stats())
        h264 = self.broadcaster.encoder("h264")
        if h264 is not None:  # the encoder in use, for status (see reactor.media.gpu)
            stats.encoder, stats.encoder_fallback = h264.name, h264.fallback
        return stats

    def _sent(self, ms: float) -> None:
        # On the event loop, once per packet a viewer's sender takes: one sample a frame.
        self.lat_send.add(ms)

    def _rate_changed(self, change: RateChange) -> None:
        # On the reader thread, at most once per RATE_EVENT_INTERVAL_S per encoder.
        event = rate_event(change)
        log.info("rate %s", event.reason)
        self.ctx.link.event(event)

    def _switched(self, switch: Switch) -> None:
        # On the event loop, when the viewer's new rendition's keyframe reaches it.
        self.ctx.link.event(switch_event(switch))

    def on_message(self, msg: wpb.ToWorker) -> None:
        """On the link thread: hand everything to the event loop."""
        body = msg.WhichOneof("body")
        if body == "stop":
            self.loop.call_soon_threadsafe(self.ctx.stop.set)
        elif body == "event":
            self.loop.call_soon_threadsafe(self.hub.on_session_event, msg.event)
        elif body == "request" and msg.request.WhichOneof("body") == "whep":
            asyncio.run_coroutine_threadsafe(self._whep(msg.id, msg.request.whep), self.loop)
        elif body == "request":
            self.ctx.link.reply(msg.id, cpb.Reply(error=cpb.Error(
                message="egress handles only WHEP requests", status=400)))

    async def _whep(self, msg_id: int, req: cpb.WhepRequest) -> None:
        try:
            reply = await self.hub.handle(req)
        except Exception as exc:
            log.exception("WHEP request failed")
            reply = cpb.Reply(error=cpb.Error(message=f"WHEP failed: {exc}", status=500))
        self.ctx.link.reply(msg_id, reply)

    def read_loop(self) -> None:
        """The reader thread: one frame in, encoded once, out to every viewer."""
        try:
            while not self.ctx.stop.is_set():
                try:
                    frame = self.reader.read(0.1)
                except ProducerGoneError:
                    # Inference died; the supervisor restarts it and the new one takes the
                    # ring over. Viewers stay connected and see frames again after that.
                    time.sleep(0.05)
                    continue
                if frame is None:
                    continue
                t0 = time.perf_counter_ns()
                self.frames_in += 1
                self.lat_ring.add((t0 - frame.enqueue_ts) / 1e6)
                # The frame's presentation time on the session clock, kept strictly
                # increasing (encoders refuse a repeated pts).
                pts = max(self.clock.rtp(frame.pts), self._last_pts + 1)
                self._last_pts = pts
                if self.broadcaster.encoders_active:
                    packets = self.broadcaster.push(frame.array, pts)
                    if self.recorder is not None and "h264" in packets:
                        self.recorder.write_packets(packets["h264"], frame.pts)
                    self.lat_encode.add((time.perf_counter_ns() - t0) / 1e6)
                if self.audio is not None:
                    self.audio.note_video(frame.pts)
                frame.release()
                self.frames_out += 1
                self._note_interval()
        except Exception as exc:
            self._thread_failed("reader thread", "output ring", exc)

    def _note_interval(self) -> None:
        if not self.broadcaster.encoders_active:
            self._handed_ns = 0  # nothing encoded (no viewer, no recording): a new run
            return
        now = time.perf_counter_ns()
        if self._handed_ns:
            self.lat_interval.add((now - self._handed_ns) / 1e6)
        self._handed_ns = now

    def audio_loop(self) -> None:
        """The audio thread: the model's sound in, one Opus packet per 20 ms window out to
        every viewer, on time; silence when none comes (no session, inference restarting),
        so the viewers' audio tracks stay up."""
        audio, reader = self.audio, self.audio_reader
        assert audio is not None
        try:
            while not self.ctx.stop.is_set():
                audio.pump()
                wait = (audio.next_due_ns() - time.perf_counter_ns()) / 1e9
                wait = min(max(wait, 0.001), 0.02)
                if reader is None:
                    time.sleep(wait)
                    continue
                try:
                    chunk = reader.read(wait)
                except ProducerGoneError:
                    # Inference died; its successor takes the ring over. Until then the
                    # windows go out silent.
                    time.sleep(wait)
                    continue
                if chunk is None:
                    continue
                try:
                    pcm = chunk.array[:chunk.length or None]
                    audio.feed(pcm, chunk.pts)
                    if self.recorder is not None:  # egress.record: placed by pts too
                        self.recorder.write_audio(pcm, chunk.pts)
                finally:
                    chunk.release()
        except Exception as exc:
            self._thread_failed("audio thread", "audio ring", exc)

    def _thread_failed(self, thread: str, ring: str, exc: Exception) -> None:
        """Called in a thread's ``except``: keep why, and stop the worker, which exits
        non-zero with it so the supervisor restarts egress."""
        if isinstance(exc, RingClosedError):
            self.failure = f"{ring} closed: {exc}"
            log.error("%s", self.failure)
        else:
            self.failure = f"{thread} failed: {type(exc).__name__}: {exc}"
            log.exception("%s failed", thread)
        self.loop.call_soon_threadsafe(self.ctx.stop.set)

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
        if self.audio is not None:
            log.info("audio: %s", self.audio.stats())
            self.audio.close()
        if self.audio_reader is not None:
            self.audio_reader.close()
        if self.audio_ring is not None:
            self.audio_ring.close()
        self.reader.close()
        self.output.close()


async def _amain(ctx: WorkerContext) -> None:
    install_patches(ctx.config.server.host)
    # min = max = 0 would keep browsers from delaying the picture to match the sound.
    answer_playout_delay(not ctx.config.audio.output)
    loop = asyncio.get_running_loop()
    worker = EgressWorker(ctx, loop)
    link = ctx.attach(worker)
    reader = threading.Thread(target=worker.read_loop, name="egress-reader", daemon=True)
    reader.start()
    threads = [reader]
    if worker.audio is not None:
        threads.append(threading.Thread(target=worker.audio_loop, name="egress-audio",
                                        daemon=True))
        threads[-1].start()
    link.ready(wpb.Ready(egress=wpb.EgressReady(codec=ctx.config.egress.codec)))
    log.info("ready")
    try:
        ticks = 0
        while not ctx.stop.is_set():
            await asyncio.sleep(0.1)
            ticks += 1
            if ticks % 10 == 0:  # once a second: the viewers' round trips from RTCP
                await worker.hub.poll_rtt()
    finally:
        await worker.hub.close()
        worker.broadcaster.close()
        for thread in threads:
            thread.join(timeout=2.0)
        worker.close()
    if worker.failure:  # exit non-zero, with the reason, so the supervisor restarts us
        raise ReactorError(worker.failure)


def main(ctx: WorkerContext) -> None:
    # With server.ice_port_range, the loop binds our peer connections' ports in it.
    ports.run(_amain(ctx), ctx.config.server.ice_port_range)
