from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import av
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from reactor.media import tracks
from reactor.media.bwe import RateChange
from reactor.media.encoder import Codec
from reactor.media.sdp import codec_preferences
from reactor.media.tracks import Broadcaster, EncodedVideoTrack
from tests.support.rtc import collect_tags, connect, new_pc, tagged_rgb

W, H = 320, 240


@pytest.fixture(autouse=True)
def keyframe_requests() -> Iterator[None]:
    # The registry's keyframe-requests patch, as egress installs it at start (making a
    # track patches nothing).
    was = tracks.keyframe_requests_enabled()
    tracks.enable_keyframe_requests()
    yield
    if not was:
        tracks.disable_keyframe_requests()


class Viewer:
    """One aiortc viewer connected to a server-side peer connection sending ``track``."""

    def __init__(self, track: EncodedVideoTrack) -> None:
        self.track = track
        self.server = new_pc()
        self.client = new_pc()
        self.arrivals: dict[int, float] = {}
        self.frames: list[av.VideoFrame] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        transceiver = self.server.addTransceiver(self.track, direction="sendonly")
        transceiver.setCodecPreferences(codec_preferences(self.track.codec))
        self.client.on(
            "track",
            lambda t: self.tasks.append(
                asyncio.ensure_future(collect_tags(t, self.arrivals, self.frames))
            ),
        )
        await connect(self.server, self.client)

    async def close(self) -> None:
        for pc in (self.server, self.client):
            await pc.close()
        for task in self.tasks:
            task.cancel()


async def _push(bc: Broadcaster, tags: range, in_thread: bool = False) -> None:
    loop = asyncio.get_running_loop()
    for tag in tags:
        rgb = tagged_rgb(tag, W, H)
        if in_thread:
            await loop.run_in_executor(None, bc.push, rgb, tag * 3000)
        else:
            bc.push(rgb, tag * 3000)
        await asyncio.sleep(1 / 30)


async def _wait_for(predicate: object, timeout: float = 5.0) -> None:
    assert callable(predicate)
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")


async def _fan_out(codec: Codec) -> None:
    bc = Broadcaster(W, H, bitrate_kbps=800)
    viewers = [Viewer(bc.add_viewer(codec)) for _ in range(3)]
    late: Viewer | None = None
    try:
        assert bc.encoders_active == 1
        for viewer in viewers:
            await viewer.start()
        await _push(bc, range(1, 46), in_thread=True)
        await _wait_for(lambda: all(44 in v.arrivals for v in viewers))
        for viewer in viewers:
            assert len(viewer.arrivals) >= 30, viewer.arrivals.keys()
            assert all((f.width, f.height) == (W, H) for f in viewer.frames)
            assert viewer.track.sent >= 30
        # Encode once: one encode per pushed frame, whatever the number of viewers.
        assert bc.frames_pushed == 45 and bc.frames_encoded == 45

        late = Viewer(bc.add_viewer(codec))
        await late.start()
        await _push(bc, range(100, 130))
        await _wait_for(lambda: 128 in late.arrivals)
        assert late.arrivals and min(late.arrivals) >= 100
        assert len(late.arrivals) >= 15
        assert bc.encoder(codec) is not None and bc.encoder(codec).keyframes >= 2  # type: ignore[union-attr]
        assert bc.frames_encoded == bc.frames_pushed == 75
    finally:
        for viewer in [*viewers, *([late] if late else [])]:
            await viewer.close()
        bc.close()
    assert bc.encoders_active == 0


@pytest.mark.timeout(60)
def test_three_h264_viewers_share_one_encoder_and_late_joiner_decodes() -> None:
    asyncio.run(_fan_out("h264"))


@pytest.mark.timeout(60)
def test_three_vp8_viewers_share_one_encoder_and_late_joiner_decodes() -> None:
    asyncio.run(_fan_out("vp8"))


async def _two_codecs_and_pli() -> None:
    bc = Broadcaster(W, H, min_keyframe_interval_s=0.1)
    h264, vp8 = Viewer(bc.add_viewer("h264")), Viewer(bc.add_viewer("vp8"))
    try:
        assert bc.encoders_active == 2
        await h264.start()
        await vp8.start()
        await _push(bc, range(1, 31))
        await _wait_for(lambda: 29 in h264.arrivals and 29 in vp8.arrivals)
        assert bc.frames_encoded == 2 * bc.frames_pushed
        encoder = bc.encoder("h264")
        assert encoder is not None
        before = encoder.keyframes
        # A PLI from the H.264 viewer must reach the shared encoder.
        server_sender = h264.server.getTransceivers()[0].sender
        receiver = h264.client.getTransceivers()[0].receiver
        await receiver._send_rtcp_pli(server_sender._ssrc)
        await _wait_for(lambda: h264.track.keyframe_requests >= 1)
        await _push(bc, range(31, 41))
        assert encoder.keyframes > before
        # The last VP8 viewer leaving stops the VP8 encoder.
        await vp8.close()
        await _wait_for(lambda: bc.encoders_active == 1)
        assert bc.encoder("vp8") is None and bc.encoders_active == 1
    finally:
        await h264.close()
        await vp8.close()
        bc.close()


@pytest.mark.timeout(60)
def test_two_codecs_pli_and_encoder_lifecycle() -> None:
    asyncio.run(_two_codecs_and_pli())


async def _slow_viewer() -> None:
    bc = Broadcaster(W, H, queue_size=3, min_keyframe_interval_s=0.0)
    track = bc.add_viewer("h264")
    try:
        # Nobody calls recv(): the queue must stay bounded and skip to keyframes.
        for tag in range(20):
            bc.push(tagged_rgb(tag, W, H), tag * 3000)
            assert len(track._queue) <= 3
        assert track.dropped > 0 and track.keyframe_requests >= 1
        # The requested keyframe comes with the next push at the latest; the viewer
        # resumes from it.
        for tag in range(20, 22):
            if track._queue:
                break
            bc.push(tagged_rgb(tag, W, H), tag * 3000)
        first = await asyncio.wait_for(track.recv(), 1.0)
        assert first.is_keyframe
        assert track.sent == 1
        stats = bc.stats()
        assert stats[0].dropped == track.dropped and stats[0].codec == "h264"
    finally:
        bc.close()
    assert track.readyState == "ended"


@pytest.mark.timeout(10)
def test_slow_viewer_is_bounded_and_resumes_at_a_keyframe() -> None:
    asyncio.run(_slow_viewer())


def test_push_without_viewers_encodes_nothing() -> None:
    bc = Broadcaster(W, H)
    assert bc.push(tagged_rgb(1, W, H), 0) == {}
    assert bc.frames_encoded == 0 and bc.encoders_active == 0


async def _held_encoder() -> None:
    bc = Broadcaster(W, H, min_keyframe_interval_s=0.0)
    bc.hold("h264")  # a recording: the encoder runs with nobody watching
    assert bc.encoders_active == 1
    first = bc.push(tagged_rgb(1, W, H), 3000)
    assert list(first) == ["h264"] and first["h264"][0].is_keyframe
    assert not bc.push(tagged_rgb(2, W, H), 6000)["h264"][0].is_keyframe
    viewer = Viewer(bc.add_viewer("h264"))
    try:
        # The viewer shares the held encoder (and its join forces a keyframe, which the
        # recording gets too).
        assert bc.encoders_active == 1
        await viewer.start()
        out = bc.push(tagged_rgb(3, W, H), 9000)
        assert out["h264"][0].is_keyframe
        await _push(bc, range(4, 40), in_thread=True)
        await _wait_for(lambda: 38 in viewer.arrivals)
        assert bc.frames_encoded == bc.frames_pushed == 39
    finally:
        await viewer.close()
    await _wait_for(lambda: not bc.viewers)
    assert bc.encoders_active == 1  # the viewer left; the hold keeps the encoder
    assert bc.push(tagged_rgb(50, W, H), 150_000)["h264"]
    bc.release("h264")
    assert bc.encoders_active == 0 and bc.push(tagged_rgb(51, W, H), 153_000) == {}
    with pytest.raises(ValueError, match="without a hold"):
        bc.release("h264")
    bc.close()


@pytest.mark.timeout(60)
def test_a_hold_keeps_one_encoder_for_a_recording_and_viewers_share_it() -> None:
    asyncio.run(_held_encoder())


async def _send_stage_and_dropped_total() -> None:
    sent_ms: list[float] = []
    bc = Broadcaster(W, H, queue_size=3, min_keyframe_interval_s=0.0, on_sent=sent_ms.append)
    slow = bc.add_viewer("h264")
    try:
        for tag in range(12):  # nobody reads: the slow viewer skips to keyframes
            bc.push(tagged_rgb(tag, W, H), tag * 3000)
        dropped = slow.dropped
        assert dropped > 0 and bc.packets_dropped == dropped
        await asyncio.sleep(0.05)
        queued = len(slow._queue)
        for _ in range(queued):
            await asyncio.wait_for(slow.recv(), 1.0)
        # One send-stage sample per packet taken, each at least the time it waited here.
        assert len(sent_ms) == queued and all(ms >= 50.0 for ms in sent_ms), sent_ms
        bc.remove_viewer(slow)
        # A viewer that left still counts in the total: it is a counter.
        assert bc.packets_dropped == dropped
        fresh = bc.add_viewer("h264")
        bc.push(tagged_rgb(99, W, H), 99 * 3000)
        assert bc.packets_dropped == dropped + fresh.dropped
    finally:
        bc.close()


@pytest.mark.timeout(10)
def test_send_stage_is_timed_per_packet_taken_and_dropped_packets_outlive_their_viewer() -> None:
    asyncio.run(_send_stage_and_dropped_total())


async def _lowest_estimate() -> None:
    bc = Broadcaster(W, H, bitrate_kbps=3000, min_bitrate_kbps=100, start_bitrate_kbps=2500)
    narrow, wide = bc.add_viewer("h264"), bc.add_viewer("h264")
    try:
        assert narrow.estimate is not None and wide.estimate is not None
        bc.push(tagged_rgb(0, W, H), 0)
        encoder = bc.encoder("h264")
        assert encoder is not None and encoder.bitrate_kbps == 2500
        narrow.estimate.on_remb(600_000)  # below 2500/1.5: the encoder reopens at it
        bc.push(tagged_rgb(1, W, H), 3000)
        assert (encoder.bitrate_kbps, encoder.reopened) == (600, 1)
        assert [s.estimate_bps for s in bc.stats()] == [600_000, 2_500_000]
        bc.remove_viewer(narrow)
        bc.push(tagged_rgb(2, W, H), 6000)
        assert encoder.bitrate_kbps == 2500
    finally:
        bc.close()


def test_the_encoder_follows_the_lowest_estimate_of_its_viewers() -> None:
    asyncio.run(_lowest_estimate())


async def _keyframe_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    # The broadcaster reads time.monotonic(); nothing in this test waits on the loop.
    monkeypatch.setattr("time.monotonic", lambda: now[0])
    bc = Broadcaster(W, H, min_keyframe_interval_s=0.25)
    track = bc.add_viewer("h264")
    try:
        encoder = bc.encoder("h264")
        assert encoder is not None
        forced = []
        # A viewer that asks for a keyframe every frame (it loses every one), 10 s.
        for frame in range(300):
            now[0] += 1 / 30
            track.request_keyframe()
            before = encoder.keyframes
            bc.push(tagged_rgb(frame, W, H), frame * 3000)
            if encoder.keyframes > before:
                forced.append(now[0])
        gaps = [b - a for a, b in itertools.pairwise(forced)]
        assert gaps[0] == pytest.approx(0.25, abs=0.04)
        assert max(gaps) == pytest.approx(tracks.MAX_KEYFRAME_INTERVAL_S, abs=0.04)
        assert len(forced) <= 10  # not 40, as one every 0.25 s would be
    finally:
        bc.close()


def test_keyframe_requests_that_keep_coming_back_off(monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_keyframe_backoff(monkeypatch))


async def _rate_events(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("time.monotonic", lambda: now[0])
    changes: list[RateChange] = []
    bc = Broadcaster(W, H, bitrate_kbps=3000, min_bitrate_kbps=100, start_bitrate_kbps=2500,
                     on_rate=changes.append)
    narrow, wide = bc.add_viewer("h264"), bc.add_viewer("h264")
    frame = 0

    def push(seconds: float) -> None:
        nonlocal frame
        for _ in range(round(seconds * 30)):
            now[0] += 1 / 30
            frame += 1
            bc.push(tagged_rgb(frame, W, H), frame * 3000)

    try:
        assert narrow.estimate is not None
        push(3)  # the first rate (a join) is no switch
        narrow.estimate.on_remb(2_200_000)  # 12 %: the encoder follows, nobody is told
        push(3)
        assert changes == []
        narrow.estimate.on_remb(600_000)
        push(0.5)
        assert changes == [RateChange("h264", 2500, 600, (narrow.id, wide.id),
                                             narrow.id)]
        narrow.estimate.on_remb(300_000)  # within 2 s of the last: held back...
        push(1)
        assert len(changes) == 1
        push(1.5)  # ...then told once
        assert changes[1:] == [RateChange("h264", 600, 300, (narrow.id, wide.id),
                                                 narrow.id)]
        bc.remove_viewer(narrow)
        push(3)
        assert changes[2:] == [RateChange("h264", 300, 2500, (wide.id,), wide.id)]
    finally:
        bc.close()


def test_a_rate_step_of_a_fifth_is_told_once_and_at_most_every_2_s(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_rate_events(monkeypatch))


# --- the rendition ladder --------------------------------------------------------------------

LADDER = ((1.0, 1.0), (0.5, 0.25))  # 320x240 at 3000 kbps, 160x120 at 750 (needs 1350)


def fall(track: EncodedVideoTrack, bps: float) -> None:
    """``track``'s REMB falls to ``bps``, from 3 Mbit/s: its link is full, and it is
    moved to the rendition the new estimate affords (a first REMB that low says only
    where the receiver's estimate starts)."""
    assert track.estimate is not None
    track.estimate.on_remb(3_000_000)
    track.estimate.on_remb(bps)


def _ladder(**kwargs: object) -> Broadcaster:
    return Broadcaster(W, H, bitrate_kbps=3000, min_bitrate_kbps=100, start_bitrate_kbps=2500,
                       renditions=LADDER, queue_size=1000, **kwargs)  # type: ignore[arg-type]


async def _one_encode_per_rendition() -> None:
    bc = _ladder()
    wide, narrow, narrower = (bc.add_viewer("h264") for _ in range(3))
    try:
        bc.push(tagged_rgb(0, W, H), 0)
        full = bc.encoder("h264", 0)
        assert full is not None and bc.encoder("h264", 1) is None
        for track in (narrow, narrower):
            assert track.estimate is not None
            fall(track, 600_000)
        for tag in range(1, 31):
            bc.push(tagged_rgb(tag, W, H), tag * 3000)
        small = bc.encoder("h264", 1)
        assert small is not None and (small.width, small.height) == (160, 120)
        # Three viewers, two renditions: one encoder each, each frame encoded once per
        # rendition and scaled once, not once per viewer.
        assert bc.encoders_active == 2
        assert full.frames_encoded == 31
        assert small.frames_encoded == 30 == bc.frames_scaled
        assert [s.rendition for s in bc.stats()] == [0, 1, 1]
        assert [(s.width, s.height) for s in bc.stats()][1] == (160, 120)
        # The full size follows its own viewer; the half size the lowest of its two.
        assert (full.bitrate_kbps, small.bitrate_kbps) == (2500, 600)
        # The wide viewer leaves: nobody watches the full size, its encoder stops.
        bc.remove_viewer(wide)
        bc.push(tagged_rgb(31, W, H), 31 * 3000)
        assert bc.encoder("h264", 0) is None and bc.encoders_active == 1
    finally:
        bc.close()


def test_each_rendition_is_encoded_once_whatever_the_number_of_its_viewers() -> None:
    asyncio.run(_one_encode_per_rendition())


def _sizes(packets: list[av.Packet]) -> list[tuple[int, int, bool]]:
    """Decode ``packets`` as one viewer's stream would be: (width, height, keyframe) of
    each frame; a decoder error fails the test."""
    decoder = av.CodecContext.create("h264", "r")
    out = []
    for packet in packets:
        for frame in decoder.decode(packet):
            out.append((frame.width, frame.height, bool(packet.is_keyframe)))
    return out


async def _switch_on_keyframe() -> None:
    switches: list[tracks.Switch] = []
    bc = _ladder(on_switch=switches.append)
    track = bc.add_viewer("h264")
    try:
        assert track.estimate is not None
        for tag in range(5):
            bc.push(tagged_rgb(tag, W, H), tag * 3000)
        fall(track, 600_000)
        for tag in range(5, 10):
            bc.push(tagged_rgb(tag, W, H), tag * 3000)
        track.estimate.on_remb(3_000_000)  # back up: the full size's keyframe first
        for tag in range(10, 15):
            bc.push(tagged_rgb(tag, W, H), tag * 3000)
        sizes = _sizes(list(track._queue))
        assert [s[:2] for s in sizes] == [(320, 240)] * 5 + [(160, 120)] * 5 + [(320, 240)] * 5
        # Each size starts with a keyframe of it (its SPS carries the new size).
        assert sizes[5][2] and sizes[10][2]
        assert [(s.way, s.src.size, s.dst.size, s.why) for s in switches] == [
            ("down", "320x240", "160x120", "estimate"), ("up", "160x120", "320x240", "estimate")]
    finally:
        bc.close()


def test_a_viewer_switches_rendition_on_a_keyframe_of_the_new_one() -> None:
    asyncio.run(_switch_on_keyframe())


async def _waits_for_keyframe() -> None:
    """The new rendition's keyframe is late (its encoder ran already, for someone else,
    and the forced keyframe is lost here): the viewer keeps the old one's packets."""
    bc = _ladder()
    track, other = bc.add_viewer("h264"), bc.add_viewer("h264")
    try:
        assert other.estimate is not None and track.estimate is not None
        fall(other, 600_000)
        for tag in range(3):
            bc.push(tagged_rgb(tag, W, H), tag * 3000)
        small = bc.encoder("h264", 1)
        assert small is not None and other.rendition == 1
        fall(track, 600_000)
        # The keyframe forced for the switch does not come for 5 frames.
        small._keyframe_requested.clear()
        original = small.force_keyframe
        small.force_keyframe = lambda: None  # type: ignore[method-assign]
        for tag in range(3, 8):
            bc.push(tagged_rgb(tag, W, H), tag * 3000)
        assert (track.rendition, track.target) == (0, 1)
        small.force_keyframe = original  # type: ignore[method-assign]
        small.force_keyframe()
        for tag in range(8, 11):
            bc.push(tagged_rgb(tag, W, H), tag * 3000)
        assert track.rendition == 1
        sizes = _sizes(list(track._queue))
        assert [s[:2] for s in sizes] == [(320, 240)] * 8 + [(160, 120)] * 3
        assert sizes[8][2]  # its first packet of the half size is a keyframe
    finally:
        bc.close()


def test_a_switching_viewer_keeps_the_old_rendition_until_the_new_ones_keyframe() -> None:
    asyncio.run(_waits_for_keyframe())


class _SizeViewer(Viewer):
    async def start(self) -> None:
        async def sizes(t: object) -> None:
            assert isinstance(t, MediaStreamTrack)
            try:
                while True:
                    frame = await t.recv()
                    assert isinstance(frame, av.VideoFrame)
                    self.frames.append(frame)
            except MediaStreamError:
                pass

        transceiver = self.server.addTransceiver(self.track, direction="sendonly")
        transceiver.setCodecPreferences(codec_preferences(self.track.codec))
        self.client.on("track", lambda t: self.tasks.append(asyncio.ensure_future(sizes(t))))
        await connect(self.server, self.client)


async def _aiortc_plays_across_switches(codec: Codec) -> None:
    bc = _ladder()
    track = bc.add_viewer(codec)
    viewer = _SizeViewer(track)
    try:
        await viewer.start()
        assert track.estimate is not None
        await _push(bc, range(0, 20))
        fall(track, 600_000)
        await _push(bc, range(20, 40))
        # Back up: a REMB of 3 Mbit/s again each frame (the viewer's own REMB, of what it
        # receives, comes in too and would hold it down). How soon it climbs depends on
        # the receiver reports: one that came while the REMB was low holds the
        # loss-based estimate there, and the viewer then goes up by a probe (about 2 s).
        tag = 40
        while (track.rendition, track.target) != (0, 0):
            assert tag < 40 + 30 * 8, "the viewer never went back up to the full size"
            track.estimate.on_remb(3_000_000)
            await _push(bc, range(tag, tag + 1))
            tag += 1
        await _push(bc, range(tag, tag + 15))
        await _wait_for(lambda: len(viewer.frames) >= tag + 10)
        sizes = [(f.width, f.height) for f in viewer.frames]
        runs = [s for i, s in enumerate(sizes) if i == 0 or s != sizes[i - 1]]
        assert runs == [(320, 240), (160, 120), (320, 240)], sizes
    finally:
        await viewer.close()
        bc.close()


@pytest.mark.parametrize("codec", ["h264", "vp8"])
@pytest.mark.timeout(30)
def test_an_aiortc_viewer_decodes_across_rendition_switches(codec: Codec) -> None:
    asyncio.run(_aiortc_plays_across_switches(codec))


async def _starts_full() -> None:
    bc = Broadcaster(W, H, bitrate_kbps=3000, min_bitrate_kbps=100, start_bitrate_kbps=1000,
                     renditions=LADDER, queue_size=1000)
    track = bc.add_viewer("h264")
    try:
        for tag in range(10):
            bc.push(tagged_rgb(tag, W, H), tag * 3000)
        # 1000 kbps is under the full size's need (1350), but nothing says the link is
        # full: the encoder opened at its top is no evidence, the estimate only starts low.
        assert track.rendition == 0 and bc.encoder("h264", 1) is None
        assert {s[:2] for s in _sizes(list(track._queue))} == {(W, H)}
    finally:
        bc.close()


def test_a_new_viewer_starts_and_stays_on_the_full_size_until_its_link_is_full() -> None:
    asyncio.run(_starts_full())
