"""WHEP viewers in the egress worker: one aiortc peer connection per viewer, all fed
the same encoded packets by the broadcaster, plus a data channel for session events.

The data channel also carries the other way each viewer's receive-side stats reports
(:mod:`reactor.workers.viewer_stats`: validated, rate-limited, for display only);
:meth:`ViewerHub.viewer_stats` gives them, with each viewer's round-trip time as egress's
own RTCP measures it (:meth:`ViewerHub.poll_rtt`) where the viewer does not say.

:class:`ViewerHub` needs only the :class:`~reactor.media.tracks.Broadcaster` its viewers
watch and a callback that it calls with the number of viewers whenever that changes (the
egress worker reports it to the supervisor); the patches its peer connections need are
installed by the worker (:func:`reactor.media.peer.install_patches`).

Sound: with ``audio.output`` on, the hub also has the
:class:`~reactor.media.audio.AudioBroadcaster`, and an offer whose (first) audio section
receives Opus gets a send-only audio track fed the same Opus packets as every other
viewer; its video and audio share one media stream id (aiortc gives every transceiver of
a peer connection the same ``msid``), which is what puts them in one sync group in a
browser. Without ``audio.output`` (or without Opus in the offer) an audio section is
answered ``inactive``, as aiortc does for a section it has nothing to send on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from reactor.config import Config
from reactor.control.events import event_to_json
from reactor.media.audio import AudioBroadcaster, EncodedAudioTrack
from reactor.media.encoder import Codec
from reactor.media.pacer import PACING_FACTOR, attach, pacer_for_answer
from reactor.media.peer import new_peer_connection
from reactor.media.sdp import SdpError, validate_offer
from reactor.media.tracks import Broadcaster, EncodedVideoTrack, add_encoded_track
from reactor.proto import control_pb2 as cpb
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb
from reactor.workers.negotiation import answer_offer, apply_offer, close_quietly
from reactor.workers.viewer_stats import ViewerReports

log = logging.getLogger(__name__)


@dataclass
class Viewer:
    id: str
    pc: RTCPeerConnection
    track: EncodedVideoTrack
    codec: Codec
    audio: EncodedAudioTrack | None = None
    channels: list[Any] = field(default_factory=list)
    joined: float = field(default_factory=time.monotonic)
    #: Round trip from the RTCP receiver reports of its video (egress's measure), ms.
    rtcp_rtt_ms: float | None = None


#: A session event this long before a viewer joined is still news to it (its own offer
#: started the session, which may have failed before egress saw the offer).
MISSED_S = 2.0


def opus_preferences() -> list[RTCRtpCodecCapability]:
    """aiortc's Opus capability alone: the audio track sends Opus packets only."""
    return [c for c in RTCRtpSender.getCapabilities("audio").codecs
            if c.mimeType.lower() == "audio/opus"]


class ViewerHub:
    """The WHEP viewers of one broadcaster: ``handle`` answers a WHEP request (offer or
    close); ``on_count(n)`` is called with the number of viewers after each change.
    ``audio`` (with ``audio.output``) gives viewers whose offer takes Opus the sound."""

    def __init__(self, broadcaster: Broadcaster, config: Config,
                 on_count: Callable[[int], None],
                 audio: AudioBroadcaster | None = None) -> None:
        self.broadcaster = broadcaster
        self.audio = audio
        self.config = config
        self.on_count = on_count
        self.viewers: dict[str, Viewer] = {}
        self.reports = ViewerReports()
        # The last session start, end or error (when egress heard it, its JSON): a viewer
        # whose data channel opens after one that came after it joined still hears it.
        self._lifecycle: tuple[float, str] | None = None

    @property
    def count(self) -> int:
        return len(self.viewers)

    def _choose_codec(self, offered: tuple[str, ...]) -> Codec:
        preferred = self.config.egress.codec
        if preferred == "vp8" and "VP8" in offered:
            return "vp8"
        if "H264" in offered:
            return "h264"
        return "vp8"

    async def handle(self, req: cpb.WhepRequest) -> cpb.Reply:
        if req.close:
            found = await self.remove(req.resource_id, "the viewer left (DELETE)")
            if not found:
                return cpb.Reply(error=cpb.Error(
                    message=f"no viewer {req.resource_id!r}", status=404))
            return cpb.Reply(whep=cpb.WhepReply(resource_id=req.resource_id))
        # server.max_viewers is the supervisor's to enforce (reactor.daemon.router's
        # viewer_limit): it also counts the offers still being answered here.
        try:
            info = validate_offer(req.sdp)
        except SdpError as exc:
            return cpb.Reply(error=cpb.Error(message=exc.reason, status=400))
        if not info.video_codecs:
            return cpb.Reply(error=cpb.Error(
                message="the offer has no video section to receive the stream", status=400))
        if info.video_direction == "sendonly":
            return cpb.Reply(error=cpb.Error(
                message="the offer only sends video; a WHEP offer must receive "
                "(recvonly); to send video, POST to /whip", status=400))
        codec = self._choose_codec(info.video_codecs)
        pc = new_peer_connection(self.config.server.ice_servers,
                                 self.config.server.ice_transport_policy)
        track = self.broadcaster.add_viewer(codec)
        audio: EncodedAudioTrack | None = None
        try:
            # Before the offer is applied, so exactly the encoder's codec is negotiated.
            transceiver = add_encoded_track(pc, track)
            if self.audio is not None and info.receives_opus:
                audio = self.audio.add_viewer()
                pc.addTransceiver(audio, direction="sendonly").setCodecPreferences(
                    opus_preferences())
            await apply_offer(pc, req.sdp)
            viewer = Viewer(req.resource_id, pc, track, codec, audio)

            @pc.on("datachannel")
            def on_channel(channel: Any) -> None:
                viewer.channels.append(channel)
                channel.on("message", lambda message: self.reports.take(viewer.id, message))

                def tell_missed() -> None:
                    # A model that fails on its first frame ends the session this viewer's
                    # offer started (ingress starts it before it forwards the offer here)
                    # before the viewer joined or its channel opened: tell it now. Later
                    # events reach the open channel through on_session_event.
                    missed = self._lifecycle
                    if missed is not None and missed[0] >= viewer.joined - MISSED_S:
                        channel.send(missed[1])

                if channel.readyState == "open":
                    tell_missed()
                else:
                    channel.once("open", tell_missed)

            @pc.on("connectionstatechange")
            async def on_state() -> None:
                if pc.connectionState in ("failed", "closed"):
                    await self.remove(viewer.id, f"connection {pc.connectionState}")

            sdp = await answer_offer(pc, self.config.server.announced_addresses)
            if track.estimate is not None:
                # This viewer's packets leave paced at 2.5x its estimate (media.pacer).
                pacer = pacer_for_answer(pc.localDescription.sdp,
                                         PACING_FACTOR * track.estimate.bps)
                track.estimate.pacer = pacer
                attach(transceiver.sender.transport, pacer)
        except Exception as exc:
            self.broadcaster.remove_viewer(track)
            if audio is not None and self.audio is not None:
                self.audio.remove_viewer(audio)
            await close_quietly(pc, f"viewer {req.resource_id}")
            if isinstance(exc, SdpError):  # the offer's fault (reactor.workers.negotiation)
                log.warning("viewer %s: WHEP offer refused: %s", req.resource_id, exc.reason)
                return cpb.Reply(error=cpb.Error(message=exc.reason, status=400))
            log.exception("viewer %s: answering the WHEP offer failed", req.resource_id)
            return cpb.Reply(error=cpb.Error(
                message="internal error answering the offer; see `reactor daemon logs "
                "egress`", status=500))
        self.viewers[viewer.id] = viewer
        self.reports.add(viewer.id)
        log.info("viewer join %s (%s%s); %d watching", viewer.id, codec,
                 " + opus" if audio is not None else "", self.count)
        self._report()
        return cpb.Reply(whep=cpb.WhepReply(resource_id=viewer.id, sdp=sdp, codec=codec))

    async def remove(self, resource_id: str, why: str) -> bool:
        viewer = self.viewers.pop(resource_id, None)
        if viewer is None:
            return False
        self.reports.remove(resource_id)
        self.broadcaster.remove_viewer(viewer.track)
        if viewer.audio is not None and self.audio is not None:
            self.audio.remove_viewer(viewer.audio)
        await viewer.pc.close()
        log.info("viewer leave %s: %s; %d watching", resource_id, why, self.count)
        self._report()
        return True

    def viewer_stats(self) -> list[tpb.ViewerStat]:
        """Each viewer's newest stats report, its codec and time connected; its round
        trip from RTCP where it reports none."""
        now = time.monotonic()
        out = []
        for v in list(self.viewers.values()):  # called from the link thread too
            st = self.reports.stat(v.id, now)
            st.codec, st.connected_s = v.codec, now - v.joined
            if not st.HasField("rtt_ms") and v.rtcp_rtt_ms is not None:
                st.rtt_ms, st.rtt_source = v.rtcp_rtt_ms, "rtcp"
            est = v.track.estimate
            if est is not None:
                st.estimate_kbps = est.bps / 1000
                if est.loss is not None:
                    st.loss = est.loss
                if est.remb_bps is not None:
                    st.remb_kbps = est.remb_bps / 1000
                st.max_kbps = self.broadcaster.bitrate_kbps
            encoder = self.broadcaster.encoder(v.codec, v.track.rendition)
            if encoder is not None:
                st.bitrate_kbps = encoder.bitrate_kbps
            ladder = self.broadcaster.ladder
            if len(ladder) > 1:  # the rung it is sent now (egress.renditions)
                r = ladder[v.track.rendition]
                st.rendition, st.sent_width, st.sent_height = r.index, r.width, r.height
            out.append(st)
        return out

    async def poll_rtt(self) -> None:
        """Note each viewer's round trip as its video sender last measured it from the
        viewer's RTCP receiver reports (aiortc's ``remote-inbound-rtp`` stats)."""
        for v in list(self.viewers.values()):
            est = v.track.estimate
            if est is not None:
                p = est.pacer
                log.debug("viewer %s: estimate %.0f kbps (remb %s, loss %s), sent %d "
                         "dropped %d, pacer backlog %.0f ms max wait %.0f ms, kf req %d",
                         v.id, est.bps / 1000, est.remb_bps, est.loss, v.track.sent,
                         v.track.dropped, p.backlog_s() * 1000 if p else -1,
                         p.max_wait_s * 1000 if p else -1, v.track.keyframe_requests)
            for sender in v.pc.getSenders():
                if sender.track is not v.track:
                    continue
                try:
                    report = await sender.getStats()
                except Exception as exc:  # a closing connection
                    log.debug("viewer %s: no sender stats: %s", v.id, exc)
                    continue
                for s in report.values():
                    rtt = getattr(s, "roundTripTime", None)
                    if s.type == "remote-inbound-rtp" and rtt is not None:
                        v.rtcp_rtt_ms = float(rtt) * 1000.0

    def _report(self) -> None:
        self.on_count(self.count)

    def on_session_event(self, ev: wpb.SessionEvent) -> None:
        text = event_to_json(ev)
        if ev.kind in (wpb.SessionEvent.STARTED, wpb.SessionEvent.ENDED,
                       wpb.SessionEvent.ERROR):
            self._lifecycle = (time.monotonic(), text)
        for viewer in list(self.viewers.values()):
            for ch in viewer.channels:
                if ch.readyState == "open":
                    try:
                        ch.send(text)
                    except Exception as exc:  # a closing channel; the viewer goes soon
                        log.debug("data channel send failed: %s", exc)

    async def close(self) -> None:
        await asyncio.gather(*(self.remove(v, "egress stopping") for v in list(self.viewers)),
                             return_exceptions=True)
