"""ViewerHub on its own: a real broadcaster, real aiortc offers, and a callback that
records the viewer counts it reports. No egress worker, no daemon."""

from __future__ import annotations

import asyncio

from aiortc import RTCPeerConnection, RTCRtpSender

from reactor.config import Config, parse_config
from reactor.media.tracks import Broadcaster
from reactor.proto import control_pb2 as cpb
from reactor.workers.viewers import ViewerHub


async def offer(direction: str = "recvonly", codec: str | None = None) -> tuple[
        RTCPeerConnection, str]:
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("video", direction=direction)
    if codec is not None:
        caps = RTCRtpSender.getCapabilities("video")
        transceiver.setCodecPreferences(
            [c for c in caps.codecs if c.mimeType in (f"video/{codec}", "video/rtx")])
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


def config(**server: object) -> Config:
    return parse_config({"video": {"width": 320, "height": 240},
                         "egress": {"codec": "vp8"}, "server": server})


def test_viewers_join_and_leave_reporting_the_count() -> None:
    counts: list[int] = []

    async def main() -> None:
        cfg = config()
        broadcaster = Broadcaster(320, 240, fps=30)
        hub = ViewerHub(broadcaster, cfg, on_count=counts.append)
        clients = [await offer(codec="VP8"), await offer(codec="H264")]
        try:
            replies = [await hub.handle(cpb.WhepRequest(resource_id=f"v{i}", sdp=sdp))
                       for i, (_, sdp) in enumerate(clients)]
            assert [r.WhichOneof("body") for r in replies] == ["whep", "whep"]
            # The configured codec where offered, else H.264.
            assert [r.whep.codec for r in replies] == ["vp8", "h264"]
            assert all("a=candidate" in r.whep.sdp for r in replies)
            assert hub.count == 2 and broadcaster.encoders_active == 2
            closed = await hub.handle(cpb.WhepRequest(resource_id="v0", close=True))
            assert closed.whep.resource_id == "v0"
            assert broadcaster.encoders_active == 1  # the VP8 viewer's encoder stopped
            gone = await hub.handle(cpb.WhepRequest(resource_id="v0", close=True))
            assert (gone.error.status, gone.error.message) == (404, "no viewer 'v0'")
            await hub.close()
            assert hub.count == 0 and broadcaster.encoders_active == 0
        finally:
            await asyncio.gather(*(pc.close() for pc, _ in clients))
            broadcaster.close()

    asyncio.run(main())
    assert counts == [1, 2, 1, 0]


def test_offers_that_cannot_watch_are_refused_with_400() -> None:
    counts: list[int] = []

    async def main() -> None:
        broadcaster = Broadcaster(320, 240, fps=30)
        hub = ViewerHub(broadcaster, config(), on_count=counts.append)
        pc, sdp = await offer(direction="sendonly")
        try:
            reply = await hub.handle(cpb.WhepRequest(resource_id="s", sdp=sdp))
            assert reply.error.status == 400
            assert "a WHEP offer must receive" in reply.error.message
            reply = await hub.handle(cpb.WhepRequest(resource_id="x", sdp="not sdp"))
            assert reply.error.status == 400
        finally:
            await pc.close()
            broadcaster.close()
        assert hub.count == 0 and broadcaster.encoders_active == 0

    asyncio.run(main())
    assert counts == []
