"""The ``playout-delay`` header extension (reactor.media.playout): answered for video when
the viewer offers it, and then carried, min = max = 0, by every RTP packet egress's sender
sends; never answered otherwise.

A real aiortc server sends a real encoded stream (``Broadcaster``, as egress does) to a real
aiortc viewer over loopback. The viewer's offer is a stock aiortc offer with the browser's
``a=extmap`` line added (aiortc never offers the extension itself); the packets checked are
the raw bytes the viewer's transport received, parsed here.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import unpack_header_extensions
from aiortc.sdp import SessionDescription

from reactor.media.playout import (
    PLAYOUT_DELAY_URI,
    answer_playout_delay,
    enable_playout_delay,
    parse_playout_delay,
    playout_delay_enabled,
)
from reactor.media.sdp import answer_sdp_for
from reactor.media.tracks import Broadcaster, add_encoded_track
from tests.support.rtc import collect_tags, new_pc, tagged_rgb

W, H = 320, 240
OFFERED_ID = 7  # the id Chromium happens to give it is irrelevant; the answer must echo ours


def with_playout_delay(offer: str, kinds: tuple[str, ...]) -> str:
    """The offer with ``a=extmap:7 <playout-delay>`` in the media sections of ``kinds``, as
    a browser writes it."""
    out: list[str] = []
    kind = ""
    for line in offer.splitlines():
        if line.startswith("m="):
            kind = line[2:].split()[0]
        out.append(line)
        if line.startswith("a=mid:") and kind in kinds:
            out.append(f"a=extmap:{OFFERED_ID} {PLAYOUT_DELAY_URI}")
    return "\r\n".join(out) + "\r\n"


def header_extensions(data: bytes) -> list[tuple[int, bytes]]:
    """The (id, value) elements of one raw RTP packet's header extension block."""
    first = data[0]
    pos = 12 + 4 * (first & 0x0F)
    if not first & 0x10:
        return []
    profile, words = struct.unpack_from("!HH", data, pos)
    return unpack_header_extensions(profile, data[pos + 4: pos + 4 + 4 * words])


class Watch:
    """An aiortc viewer (the offerer, recvonly video and audio) of an egress-like server."""

    def __init__(self, bc: Broadcaster) -> None:
        self.bc = bc
        self.track = bc.add_viewer("h264")
        self.server = new_pc()
        self.client = new_pc()
        self.arrivals: dict[int, float] = {}
        self.raw: list[bytes] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.answer = ""

    async def connect(self, offered_in: tuple[str, ...]) -> None:
        self.client.addTransceiver("video", direction="recvonly")
        self.client.addTransceiver("audio", direction="recvonly")
        self.client.on("track", lambda t: self.tasks.append(asyncio.ensure_future(
            collect_tags(t, self.arrivals))) if t.kind == "video" else None)
        await self.client.setLocalDescription(await self.client.createOffer())
        offer = with_playout_delay(self.client.localDescription.sdp, offered_in)
        add_encoded_track(self.server, self.track)
        await self.server.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        self.answer = await answer_sdp_for(self.server)
        transport = self.client.getTransceivers()[0].receiver.transport
        handle = transport._handle_rtp_data

        async def keep_raw(data: bytes, arrival_time_ms: int) -> None:
            self.raw.append(data)
            await handle(data, arrival_time_ms=arrival_time_ms)

        transport._handle_rtp_data = keep_raw  # type: ignore[method-assign]
        await self.client.setRemoteDescription(
            RTCSessionDescription(sdp=self.answer, type="answer"))

    async def play(self, frames: int) -> None:
        loop = asyncio.get_running_loop()
        for tag in range(1, frames + 1):
            await loop.run_in_executor(None, self.bc.push, tagged_rgb(tag, W, H), tag * 3000)
            await asyncio.sleep(1 / 30)
        for _ in range(100):
            if frames - 1 in self.arrivals:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"frames received: {sorted(self.arrivals)}")

    def extmaps(self, kind: str) -> dict[str, int]:
        media = next(m for m in SessionDescription.parse(self.answer).media if m.kind == kind)
        return {x.uri: x.id for x in media.rtp.headerExtensions}

    async def close(self) -> None:
        for pc in (self.server, self.client):
            await pc.close()
        for task in self.tasks:
            task.cancel()
        self.bc.remove_viewer(self.track)


async def watch(offered_in: tuple[str, ...]) -> Watch:
    enable_playout_delay()
    enable_playout_delay()  # idempotent
    assert playout_delay_enabled()
    bc = Broadcaster(W, H, bitrate_kbps=800)
    w = Watch(bc)
    try:
        await w.connect(offered_in)
        await w.play(20)
    finally:
        await w.close()
        bc.close()
    return w


def test_parse_playout_delay_reads_12_bit_limits_in_10_ms_units() -> None:
    assert parse_playout_delay(b"\x00\x00\x00") == (0, 0)
    assert parse_playout_delay(bytes((0x00, 0x10, 0x0A))) == (10, 100)
    with pytest.raises(ValueError, match="3 bytes"):
        parse_playout_delay(b"\x00\x00")


@pytest.mark.timeout(60)
def test_a_viewer_that_offers_playout_delay_gets_it_zero_on_every_video_packet() -> None:
    w = asyncio.run(watch(offered_in=("video", "audio")))
    assert w.extmaps("video").get(PLAYOUT_DELAY_URI) == OFFERED_ID, w.answer
    assert PLAYOUT_DELAY_URI not in w.extmaps("audio"), "answered for audio: " + w.answer
    assert len(w.arrivals) >= 15, sorted(w.arrivals)
    assert len(w.raw) >= 20
    for data in w.raw:
        delays = [v for x_id, v in header_extensions(data) if x_id == OFFERED_ID]
        assert [parse_playout_delay(v) for v in delays] == [(0, 0)], header_extensions(data)
    # The other extensions are still there and still readable (mid, abs-send-time).
    mid_id = w.extmaps("video")["urn:ietf:params:rtp-hdrext:sdes:mid"]
    assert all(dict(header_extensions(d)).get(mid_id) == b"0" for d in w.raw)


@pytest.mark.timeout(60)
def test_a_viewer_that_does_not_offer_playout_delay_gets_no_such_extension() -> None:
    w = asyncio.run(watch(offered_in=()))
    assert PLAYOUT_DELAY_URI not in w.answer
    assert len(w.arrivals) >= 15, sorted(w.arrivals)
    negotiated = set(w.extmaps("video").values())
    for data in w.raw:
        assert {x_id for x_id, _ in header_extensions(data)} <= negotiated


@pytest.mark.timeout(60)
def test_a_stream_with_sound_does_not_answer_playout_delay() -> None:
    answer_playout_delay(False)  # what egress does with audio.output on
    try:
        w = asyncio.run(watch(offered_in=("video", "audio")))
    finally:
        answer_playout_delay(True)
    assert PLAYOUT_DELAY_URI not in w.answer
    assert len(w.arrivals) >= 15, sorted(w.arrivals)
    negotiated = set(w.extmaps("video").values())
    for data in w.raw:
        assert {x_id for x_id, _ in header_extensions(data)} <= negotiated


def test_aiortc_never_offers_playout_delay_itself() -> None:
    async def offer() -> str:
        enable_playout_delay()
        pc: RTCPeerConnection = new_pc()
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    assert PLAYOUT_DELAY_URI not in asyncio.run(offer())

