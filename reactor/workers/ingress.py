"""The ingress worker: the daemon's only public listener.

An aiohttp server (handlers and routes in :mod:`reactor.workers.http`, for which
:class:`Ingress` is the :class:`~reactor.workers.http.Backend`) that serves the web client,
the API, and WHIP/WHEP signalling. WHIP video is decoded by aiortc, converted to the
pipeline's size and format, and written into the ``input`` ring (latest-frame
semantics: a model that falls behind sees the newest frame). With ``audio.input`` on, the
WHIP client's sound is decoded too, converted to ``audio.sample_rate``/``audio.channels``
and written into the ``audio_in`` ring in 20 ms chunks (:mod:`reactor.media.audio_in`);
a client may then send sound, video, or both. Video frames and audio chunks carry their
arrival time (CLOCK_MONOTONIC ns) as their presentation time, so a model can pair them.
With ``audio.input`` off, an offered audio section is answered ``inactive`` (nothing is
received or decoded). WHEP offers and commands go over the link to the supervisor, which
relays them to egress and inference.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection
from aiortc.exceptions import InvalidStateError
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from reactor.control.events import event_to_json
from reactor.errors import HttpError
from reactor.ipc import RingTimeout, ShmRing
from reactor.media import ports
from reactor.media.audio_in import RECEIVER_PREFETCH, AudioChunker
from reactor.media.convert import WEBRTC_UNDESCRIBED, frame_to_rgb
from reactor.media.peer import install_patches, new_peer_connection
from reactor.media.rate import with_start_bitrate
from reactor.media.sdp import SdpError, validate_offer
from reactor.proto import control_pb2 as cpb
from reactor.proto import worker_pb2 as wpb
from reactor.runtime.latency import LatencyWindow
from reactor.runtime.stats import ProcessStats
from reactor.workers.admission import Admission, Held
from reactor.workers.base import WorkerContext
from reactor.workers.http import REQUEST_TIMEOUT_S, Api, EventFeed, build_app
from reactor.workers.negotiation import answer_offer, apply_offer, close_quietly
from reactor.workers.stats import worker_stats

log = logging.getLogger(__name__)

#: How long stopping waits for requests still being handled.
SHUTDOWN_S = 2.0
#: A sender that sent no media for this long has vanished (a killed browser sends
#: nothing, and ICE's consent checks would take 30 s to say so): its WHIP slot is freed.
SENDER_SILENCE_S = 10.0


class FramePace:
    """Takes at most ``fps`` frames a second from a sender that sends more (a 30 fps
    camera for a ``video.fps: 15`` model): a frame is taken when it comes no earlier than
    half an interval before the next one is due; a sender slower than ``fps`` loses
    nothing."""

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps
        self._due: float | None = None

    def take(self, now: float) -> bool:
        if self._due is not None and now < self._due - self.interval / 2:
            return False
        # From the frame's slot, not its arrival: jitter does not slow the rate down. Late
        # by more than half an interval (a pause, or the start), the schedule starts again
        # from now.
        slot = self._due if self._due is not None and now < self._due + self.interval / 2 \
            else now
        self._due = slot + self.interval
        return True


@dataclass
class Sender:
    """The one WHIP client sending video, sound, or both."""

    id: str
    pc: RTCPeerConnection
    channels: list[Any] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    audio_task: asyncio.Task[None] | None = None
    #: Session events its data channels could not take (logged once as a warning).
    events_lost: int = 0
    #: When it last sent a frame or sound (monotonic); its join until the first.
    last_heard: float = field(default_factory=time.monotonic)

    def silent_s(self, now: float) -> float:
        return max(0.0, now - self.last_heard)


class Ingress:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.input = ShmRing.attach(ctx.rings.input)
        handle = ctx.rings.audio_in
        self.audio_in = ShmRing.attach(handle) if handle is not None else None
        self.audio_samples_in = 0
        """Samples per channel decoded from the sender (at the wire's rate: 48 kHz Opus)."""
        self.audio_samples_out = 0
        """Samples per channel written into ``audio_in`` (at ``audio.sample_rate``)."""
        self.audio_dropped = 0
        """Chunks ``audio_in`` had no room for (the model did not take them in time)."""
        self.sender: Sender | None = None
        # A WHIP offer admitted and being answered holds the slot until it is the sender
        # or has failed, so a second offer arriving meanwhile is refused at once.
        self._whip_claimed = False
        # Who may start or join a session (session.exclusive's owner, draining).
        self.admission = Admission(exclusive=self.config.session.exclusive)
        self.events = EventFeed()
        self.frames_in = 0
        self.frames_out = 0
        self.lat_decode = LatencyWindow("decode")
        self.proc = ProcessStats()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.api: Api | None = None  # set once the app is built; counts HTTP requests

    # --- link -------------------------------------------------------------------------

    def stats(self) -> wpb.WorkerStats:
        return worker_stats(self.proc, self.frames_in, self.frames_out, (self.lat_decode,),
                            sender=self.sender is not None,
                            audio_samples_in=self.audio_samples_in,
                            audio_samples_out=self.audio_samples_out,
                            audio_dropped=self.audio_dropped,
                            http_requests=self.api.request_counts() if self.api else ())

    def on_message(self, msg: wpb.ToWorker) -> None:
        loop = self.loop
        if loop is None:
            return
        body = msg.WhichOneof("body")
        if body == "stop":
            loop.call_soon_threadsafe(self.ctx.stop.set)
        elif body == "event":
            loop.call_soon_threadsafe(self.publish_event, msg.event)

    async def request(self, req: cpb.Request, timeout: float = REQUEST_TIMEOUT_S) -> cpb.Reply:
        """Ask the supervisor; raise :class:`~reactor.errors.HttpError` with the reply's
        status."""
        fut = self.ctx.link.request(req)
        try:
            reply = await asyncio.wait_for(asyncio.wrap_future(fut), timeout)
        except TimeoutError:
            self.ctx.link.forget(req.id)
            raise HttpError(504, f"the daemon did not answer within {timeout:g} s") from None
        if reply.HasField("error"):
            e = reply.error
            raise HttpError(e.status or 500, e.message, e.field or None)
        return reply

    # --- admission (reactor.workers.admission) ----------------------------------------

    def admit(self, key: str | None, kind: str) -> str | None:
        """Let a WHIP or WHEP offer (``kind``) in, or refuse it (503 busy, 409); synchronous,
        so offers arriving together are settled one after the other. A WHIP offer let in
        claims the WHIP slot until :meth:`whip_offer` has answered or failed."""
        held: Held | None = None
        if kind == "whip":
            if self.sender is not None:
                why, retry = self._busy(self.sender)
                held = Held(why, retry)
            elif self._whip_claimed:
                held = Held("another client's WHIP offer is being answered now; the WHIP "
                            "slot is taken (one sender at a time)")
        owner = self.admission.admit(key, whip_held=held)
        if kind == "whip":
            self._whip_claimed = True
        return owner

    def release(self, key: str | None) -> None:
        self.admission.release(key)

    def busy(self) -> str | None:
        return self.admission.busy()

    def publish_event(self, ev: wpb.SessionEvent) -> None:
        if ev.kind == wpb.SessionEvent.STARTED:
            self.admission.session_started(ev.session_id)
        elif ev.kind in (wpb.SessionEvent.ENDED, wpb.SessionEvent.ERROR):
            self.admission.session_ended(ev.session_id)
        elif ev.kind == wpb.SessionEvent.DRAINING:
            self.admission.draining = ev.reason or "the daemon is draining"
        text = event_to_json(ev)
        self.events.publish(f"{ev.ts:.6f}", text)
        sender = self.sender
        if sender is not None:
            for ch in sender.channels:
                if ch.readyState == "open":
                    try:
                        ch.send(text)
                    except (InvalidStateError, ValueError) as exc:
                        # Closing under us, or the event is over the peer's message size.
                        # An event stream can be long: the first loss is a warning, the
                        # rest debug, with the count.
                        sender.events_lost += 1
                        log.log(logging.WARNING if sender.events_lost == 1 else logging.DEBUG,
                                "sender %s: data channel %r did not take session %s's "
                                "event (%d lost): %s", sender.id, ch.label, ev.session_id,
                                sender.events_lost, exc)

    def report_clients(self) -> None:
        self.ctx.link.clients(sender=self.sender is not None)

    async def ensure_session(self) -> None:
        """The first client starts the session; later ones join it. A client is let in
        while the session cannot start (inference restarting: it starts once the worker is
        back), unless the daemon is draining: no session will start here again."""
        try:
            await self.request(cpb.Request(session=cpb.SessionRequest(
                action=cpb.SessionRequest.START)))
        except HttpError as exc:
            # The draining event comes before the refusal on the same link, so it is known.
            if self.admission.draining is not None:
                raise HttpError(503, f"draining: {self.admission.draining}; another daemon "
                                "may take a new session", retry_after_s=exc.retry_after_s
                                or 5.0) from None
            log.warning("could not start a session: %s", exc.message)

    # --- WHIP -------------------------------------------------------------------------

    async def whip_offer(self, sdp: str) -> tuple[str, str]:
        """Accept a WHIP offer that :meth:`admit` let in (it holds the WHIP slot); return
        ``(resource id, answer SDP)``."""
        try:
            return await self._whip_offer(sdp)
        finally:
            self._whip_claimed = False  # the sender now, or failed: the claim is over

    async def _whip_offer(self, sdp: str) -> tuple[str, str]:
        hearing = self.audio_in is not None
        try:
            info = validate_offer(sdp, require_video=False)
        except SdpError as exc:
            raise HttpError(400, exc.reason) from None
        sends_audio = info.audio_direction in ("sendonly", "sendrecv")
        if not info.video_codecs:  # an offer with an audio section and no video
            if not hearing:
                raise HttpError(400, "the offer has audio and no video, but this daemon's "
                                     "model does not listen (audio.input is false): send video")
            if not sends_audio:
                raise HttpError(400, f"a WHIP offer must send video or audio, but it has no "
                                     f"video section and its audio section is "
                                     f"{info.audio_direction}")
        elif info.video_direction not in ("sendonly", "sendrecv") and not (
                hearing and sends_audio):
            what = "video or audio" if hearing else "video"
            raise HttpError(400, f"a WHIP offer must send {what}, but its video section is "
                                f"{info.video_direction} (to watch, POST the offer to /whep)")
        pc = new_peer_connection(self.config.server.ice_servers,
                                 self.config.server.ice_transport_policy)
        sender = Sender(uuid.uuid4().hex[:16], pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video" and sender.task is None:
                sender.task = asyncio.ensure_future(self._receive(sender, track))
            elif track.kind == "audio" and hearing and sender.audio_task is None:
                sender.audio_task = asyncio.ensure_future(self._receive_audio(sender, track))

        @pc.on("datachannel")
        def on_channel(channel: Any) -> None:
            sender.channels.append(channel)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.whip_close(sender.id, f"connection {pc.connectionState}")

        try:
            try:
                await apply_offer(pc, sdp)
                for t in pc.getTransceivers():
                    # Sound nobody reads would pile up, decoded, in aiortc's track queue.
                    t.direction = "recvonly" if t.kind == "video" or hearing else "inactive"
                answer = await answer_offer(pc, self.config.server.announced_addresses)
            except SdpError as exc:  # the offer's fault (reactor.workers.negotiation)
                raise HttpError(400, exc.reason) from None
            # Our own answer: an SdpError here is a bug of ours, not the client's (500).
            answer = with_start_bitrate(answer)
        except BaseException:  # a 400 above, or ours: Api.guard logs the traceback, 500
            await close_quietly(pc, f"sender {sender.id}")
            raise
        # admit() claimed the slot for this offer: no other sender came in meanwhile.
        self.sender = sender
        media = [*info.video_codecs, *(["audio"] if hearing and sends_audio else [])]
        log.info("sender join %s (%s)", sender.id, ",".join(media))
        self.report_clients()
        try:
            await self.ensure_session()
        except HttpError:  # draining: no session for this sender
            await self.whip_close(sender.id, "refused: the daemon is draining")
            raise
        return sender.id, answer

    @staticmethod
    def _busy(sender: Sender) -> tuple[str, float]:
        """Why a second sender is refused, and in how many seconds it may try again."""
        silent = sender.silent_s(time.monotonic())
        if silent < 1.0:
            return ("another client is already sending (WHIP); DELETE /whip/"
                    f"{sender.id} first, or wait for it to leave", 5.0)
        left = max(1.0, SENDER_SILENCE_S - silent)
        return (f"another client holds the WHIP slot but has sent nothing for {silent:.0f} s; "
                f"a sender silent for {SENDER_SILENCE_S:g} s is let go: retry in "
                f"{left:.0f} s, or DELETE /whip/{sender.id}", float(math.ceil(left)))

    async def drop_silent_sender(self, now: float) -> None:
        """Free the WHIP slot of a sender silent for :data:`SENDER_SILENCE_S`."""
        sender = self.sender
        if sender is not None and sender.silent_s(now) >= SENDER_SILENCE_S:
            await self.whip_close(sender.id, f"no media for {SENDER_SILENCE_S:g} s (the "
                                             "client vanished)")

    async def whip_close(self, resource_id: str, why: str) -> bool:
        sender = self.sender
        if sender is None or sender.id != resource_id:
            return False
        self.sender = None
        for task in (sender.task, sender.audio_task):
            if task is not None:
                task.cancel()
        await sender.pc.close()
        log.info("sender leave %s: %s", resource_id, why)
        self.report_clients()
        return True

    async def _receive(self, sender: Sender, track: MediaStreamTrack) -> None:
        v = self.config.video
        loop = asyncio.get_running_loop()
        pace = FramePace(v.fps)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            arrived = time.perf_counter_ns()
            sender.last_heard = time.monotonic()
            self.frames_in += 1
            if not pace.take(sender.last_heard):
                continue  # faster than video.fps: the model takes at most that many
            # swscale releases the GIL: convert off the loop so signalling stays responsive.
            rgb = await loop.run_in_executor(
                None, frame_to_rgb, frame, v.width, v.height,  # type: ignore[arg-type]
                WEBRTC_UNDESCRIBED,
            )
            self.input.write(rgb, frame_id=self.frames_in, capture_ts=arrived, pts=arrived)
            self.frames_out += 1
            self.lat_decode.add((time.perf_counter_ns() - arrived) / 1e6)

    async def _receive_audio(self, sender: Sender, track: MediaStreamTrack) -> None:
        ring = self.audio_in
        assert ring is not None
        a = self.config.audio
        chunker = AudioChunker(a.sample_rate, a.channels, held_frames=RECEIVER_PREFETCH)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            arrived = time.perf_counter_ns()
            sender.last_heard = time.monotonic()
            self.audio_samples_in += getattr(frame, "samples", 0)
            try:
                chunks = chunker.push(frame, arrived)  # type: ignore[arg-type]
            except ValueError as exc:  # a sample format the decoder should never give
                log.error("sender audio dropped: %s", exc)
                return
            for pcm, pts in chunks:
                try:
                    # In order, never waiting: a model that does not keep up loses the
                    # chunks the full ring has no room for (counted).
                    ring.write(pcm, pts=pts, timeout=0)
                except RingTimeout:
                    self.audio_dropped += 1
                    continue
                self.audio_samples_out += len(pcm)

    # --- WHEP -------------------------------------------------------------------------

    async def whep_offer(self, sdp: str) -> tuple[str, str]:
        try:
            validate_offer(sdp)
        except SdpError as exc:
            raise HttpError(400, exc.reason) from None
        rid = uuid.uuid4().hex[:16]
        await self.ensure_session()
        reply = await self.request(cpb.Request(whep=cpb.WhepRequest(resource_id=rid, sdp=sdp)))
        return reply.whep.resource_id, reply.whep.sdp

    async def whep_close(self, resource_id: str) -> None:
        await self.request(cpb.Request(whep=cpb.WhepRequest(resource_id=resource_id,
                                                            close=True)))

    async def close(self) -> None:
        self.events.end()
        if self.sender is not None:
            await self.whip_close(self.sender.id, "ingress stopping")
        self.input.close()
        if self.audio_in is not None:
            self.audio_in.close()


async def _amain(ctx: WorkerContext) -> None:
    install_patches(ctx.config.server.host)
    ingress = Ingress(ctx)
    ingress.loop = asyncio.get_running_loop()
    link = ctx.attach(ingress)
    ingress.api = Api(ingress, ingress.events, ctx.config.server, ctx.config.audio,
                      metrics_public=ctx.config.metrics.public,
                      exclusive=ctx.config.session.exclusive)
    app = build_app(ingress.api)
    # keepalive_timeout closes a connection that has not completed a request this long
    # after it opened or after its last response, whether it is idle or dribbling header
    # bytes (a slow-loris client): aiohttp counts it from the connection's start and does
    # not restart it on partial data.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                           keepalive_timeout=ctx.config.server.idle_timeout_s,
                           shutdown_timeout=SHUTDOWN_S)
    await runner.setup()
    cfg = ctx.config.server
    site = web.TCPSite(runner, cfg.host, cfg.port, reuse_address=True,
                       shutdown_timeout=SHUTDOWN_S, ssl_context=ctx.config.ssl_context())
    await site.start()
    # With port 0 the system chose one: the first bound socket's address says which.
    port = int(runner.addresses[0][1]) if runner.addresses else cfg.port
    link.ready(wpb.Ready(ingress=wpb.IngressReady(host=cfg.host, port=port)))
    log.info("ready: listening on %s://%s:%d/", cfg.scheme, cfg.host, port)
    try:
        while not ctx.stop.is_set():
            await asyncio.sleep(0.1)
            await ingress.drop_silent_sender(time.monotonic())
    finally:
        await ingress.close()
        await runner.cleanup()


def main(ctx: WorkerContext) -> None:
    # With server.ice_port_range, the loop binds our peer connections' ports in it.
    ports.run(_amain(ctx), ctx.config.server.ice_port_range)
