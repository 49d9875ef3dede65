from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCSessionDescription

from reactor.media.sdp import (
    SdpError,
    announce_host_candidates,
    answer_sdp_for,
    codec_preferences,
    validate_offer,
)
from tests.support.rtc import QueueVideoTrack, new_pc

VIDEO = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF {pts}\r\nc=IN IP4 0.0.0.0\r\na=recvonly\r\n{maps}"
)
H264 = "a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n"
VP8 = "a=rtpmap:96 VP8/90000\r\n"


def _offer(pts: str, maps: str) -> str:
    return VIDEO.format(pts=pts, maps=maps)


def test_prefers_h264_when_offered() -> None:
    info = validate_offer(_offer("96 102", VP8 + H264))
    assert info.video_codecs == ("VP8", "H264") and info.codec == "h264"
    assert info.video_direction == "recvonly" and not info.trickle_less


def test_vp8_when_only_vp8() -> None:
    assert validate_offer(_offer("96", VP8)).codec == "vp8"


def test_h264_without_packetization_mode_1_is_not_usable() -> None:
    maps = "a=rtpmap:102 H264/90000\r\n"
    with pytest.raises(SdpError, match="packetization-mode=1"):
        validate_offer(_offer("102", maps))
    assert validate_offer(_offer("102 96", maps + VP8)).codec == "vp8"
    high = "a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=640c1f\r\n"
    assert validate_offer(_offer("102 96", high + VP8)).codec == "vp8"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \r\n", "empty"),
        (b"\xff\xfe v=0", "not UTF-8"),
        ("v=0\r\n\x00\x01", "binary"),
        ("o=- 1 2 IN IP4 1.2.3.4\r\nv=0\r\n", "start with 'v=0'"),
        ("v=0\r\nthis is not sdp\r\n", "line 2"),
        ("v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "no 'm=video'"),
        ("v=0\r\nm=video\r\n", "malformed media line"),
        (_offer("45", "a=rtpmap:45 AV1/90000\r\n"), "found AV1"),
        ("v=0\r\n" + "a=x\r\n" * 30000, "limit"),
    ],
)
def test_hostile_or_malformed_offers_are_rejected(text: str | bytes, reason: str) -> None:
    with pytest.raises(SdpError) as err:
        validate_offer(text)
    assert reason in err.value.reason


def test_bytes_over_limit_rejected_before_decoding() -> None:
    with pytest.raises(SdpError, match="limit of 100"):
        validate_offer(b"v=0\r\n" + b"\xff" * 200, max_bytes=100)


async def _real_offer_and_answer() -> None:
    offerer, answerer = new_pc(), new_pc()
    try:
        offerer.addTrack(QueueVideoTrack())
        await offerer.setLocalDescription(await offerer.createOffer())
        info = validate_offer(offerer.localDescription.sdp)
        assert info.codec == "h264" and "VP8" in info.video_codecs
        assert info.video_direction == "sendrecv"
        assert info.trickle_less and info.candidates >= 1
        await answerer.setRemoteDescription(
            RTCSessionDescription(sdp=offerer.localDescription.sdp, type="offer")
        )
        answer = await answer_sdp_for(answerer)
        # aiortc gathered before answering: candidates and end-of-candidates are in it.
        assert "a=candidate:" in answer and "a=end-of-candidates" in answer
    finally:
        await offerer.close()
        await answerer.close()


@pytest.mark.timeout(20)
def test_aiortc_offer_validates_and_answer_is_non_trickle() -> None:
    asyncio.run(_real_offer_and_answer())


def test_codec_preferences() -> None:
    assert {c.mimeType for c in codec_preferences("h264")} == {"video/H264", "video/rtx"}
    assert {c.mimeType for c in codec_preferences("vp8")} == {"video/VP8", "video/rtx"}


# --- Firefox's offer, and announced addresses ---------------------------------------------

# What Firefox ESR 153 offers for a receive-only video transceiver (trimmed to VP8): mDNS
# host candidates only, component-2 and TCP candidates, ice-options:trickle, and
# end-of-candidates.
FIREFOX_OFFER = "\r\n".join([
    "v=0",
    "o=mozilla...THIS_IS_SDPARTA-99.0 1186483921089053626 0 IN IP4 0.0.0.0",
    "s=-", "t=0 0", "a=sendrecv",
    "a=fingerprint:sha-256 A1:DB:58:53:A9:F9:33:C3:5A:80:92:3E:8E:A4:E0:86:6C:31:6E:52:CA:"
    "F0:7C:0F:91:C7:75:27:BD:1A:97:BC",
    "a=group:BUNDLE 0", "a=ice-options:trickle", "a=msid-semantic:WMS *",
    "m=video 9 UDP/TLS/RTP/SAVPF 120 124", "c=IN IP4 0.0.0.0",
    "a=candidate:0 1 UDP 2122187007 6c8e121d-3c59-4470-8630-999374067941.local 54051 typ host",
    "a=candidate:1 1 UDP 2122252543 76ccd41a-6253-48bb-b5fa-1c150ee6004a.local 37836 typ host",
    "a=candidate:2 1 TCP 2105458943 6c8e121d-3c59-4470-8630-999374067941.local 9 typ host "
    "tcptype active",
    "a=candidate:0 2 UDP 2122187006 6c8e121d-3c59-4470-8630-999374067941.local 55839 typ host",
    "a=recvonly", "a=end-of-candidates",
    "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=fmtp:120 max-fs=12288;max-fr=60", "a=fmtp:124 apt=120",
    "a=ice-pwd:29016a6cb559011aa3ca901e60572c59", "a=ice-ufrag:dcf43781", "a=mid:0",
    "a=rtcp:55839 IN IP4 6c8e121d-3c59-4470-8630-999374067941.local",
    "a=rtcp-fb:120 nack", "a=rtcp-fb:120 nack pli", "a=rtcp-fb:120 ccm fir",
    "a=rtcp-mux", "a=rtcp-rsize",
    "a=rtpmap:120 VP8/90000", "a=rtpmap:124 rtx/90000",
    "a=setup:actpass", "a=ssrc:1101459425 cname:{8c36275b-6806-4b2b-b146-39950498df5d}", "",
])


def test_firefox_offer_validates() -> None:
    info = validate_offer(FIREFOX_OFFER)
    assert info.codec == "vp8" and info.video_codecs == ("VP8", "RTX")
    assert info.video_direction == "recvonly" and info.candidates == 4


async def _answer_firefox(grace: bool) -> str:
    from reactor.media import ice

    ice.enable_end_of_candidates_grace(grace)
    pc = new_pc()
    try:
        pc.addTransceiver("video", direction="sendonly")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=FIREFOX_OFFER, type="offer"))
        return await answer_sdp_for(pc)
    finally:
        await pc.close()
        ice.enable_end_of_candidates_grace(False)


@pytest.mark.timeout(30)
def test_answer_to_firefox_carries_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    # The daemon's setup: loopback policy (mDNS names dropped unresolved) and the grace;
    # gathering kept on 127.0.0.1 (conftest.py).
    import aioice.ice

    from reactor.media import ice

    ice.restrict_ice_to_loopback()
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    try:
        without = asyncio.run(_answer_firefox(grace=False))
        answer = asyncio.run(_answer_firefox(grace=True))
    finally:
        ice.restrict_ice_to_loopback(False)
    assert "a=candidate:" not in without  # what Firefox got before the patch
    hosts = [line.split()[4] for line in answer.splitlines() if line.startswith("a=candidate:")]
    assert hosts and hosts[0] == "127.0.0.1", answer
    assert "a=setup:active" in answer


ANSWER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0",
    "m=video 40001 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 10.0.0.5",
    "a=candidate:aa 1 udp 2130706431 10.0.0.5 40001 typ host",
    "a=candidate:bb 1 udp 2130706431 172.17.0.2 40002 typ host",
    "a=candidate:cc 1 udp 2130706431 fd00::5 40003 typ host",
    "a=candidate:dd 1 udp 1694498815 198.51.100.9 40001 typ srflx raddr 10.0.0.5 rport 40001",
    "a=candidate:ee 1 udp 16777215 198.51.100.10 50000 typ relay raddr 0.0.0.0 rport 9",
    "a=end-of-candidates", "a=mid:0", "",
])


def _candidates(sdp: str) -> list[tuple[str, str, str]]:
    return [(p[4], p[5], p[7]) for p in (line.split() for line in sdp.split("\r\n"))
            if p and p[0].startswith("a=candidate:")]


def test_announced_address_replaces_host_candidates() -> None:
    out = announce_host_candidates(ANSWER, ["203.0.113.7"])
    assert _candidates(out) == [
        ("203.0.113.7", "40001", "host"), ("203.0.113.7", "40002", "host"),
        ("198.51.100.9", "40001", "srflx"), ("198.51.100.10", "50000", "relay")]
    assert "c=IN IP4 203.0.113.7" in out.split("\r\n")
    assert out.endswith("\r\n") and "\n" not in out.replace("\r\n", "")


def test_announced_addresses_per_family() -> None:
    out = announce_host_candidates(ANSWER, ["203.0.113.7", "2001:db8::7"])
    hosts = [c for c in _candidates(out) if c[2] == "host"]
    assert hosts == [("203.0.113.7", "40001", "host"), ("203.0.113.7", "40002", "host"),
                     ("2001:db8::7", "40003", "host")]


def test_only_ipv6_announced_leaves_no_ipv4_host_candidate() -> None:
    out = announce_host_candidates(ANSWER, ["2001:db8::7"])
    assert [c for c in _candidates(out) if c[2] == "host"] == [("2001:db8::7", "40003", "host")]
    assert "c=IN IP6 2001:db8::7" in out.split("\r\n")


AUDIO = ("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na={direction}\r\n"
         "a=rtpmap:111 opus/48000/2\r\n")


def test_audio_only_offer_is_accepted_only_when_video_is_not_required() -> None:
    offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" + AUDIO.format(
        direction="sendonly")
    with pytest.raises(SdpError, match="no 'm=video'"):
        validate_offer(offer)
    info = validate_offer(offer, require_video=False)
    assert info.video_codecs == () and info.video_direction == ""
    assert info.has_audio and info.audio_direction == "sendonly"
    assert info.media_kinds == ("audio",)


def test_audio_direction_is_described_next_to_video() -> None:
    info = validate_offer(_offer("96", VP8) + AUDIO.format(direction="sendrecv"))
    assert info.video_direction == "recvonly" and info.audio_direction == "sendrecv"
    assert validate_offer(_offer("96", VP8)).audio_direction == ""


def test_the_first_audio_sections_codecs_say_whether_it_receives_opus() -> None:
    # The WHEP viewers' one answer to "does this offer take our sound": no second parse.
    info = validate_offer(_offer("96", VP8) + AUDIO.format(direction="recvonly"))
    assert info.audio_codecs == ("OPUS",) and info.receives_opus
    assert not validate_offer(_offer("96", VP8) + AUDIO.format(direction="sendonly")
                              ).receives_opus
    assert not validate_offer(_offer("96", VP8)).receives_opus
    pcmu = ("m=audio 9 UDP/TLS/RTP/SAVPF 0 111\r\nc=IN IP4 0.0.0.0\r\na=sendrecv\r\n"
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 opus/48000/2\r\n")  # 8 is not on the m= line
    info = validate_offer(_offer("96", VP8) + pcmu)
    assert info.audio_codecs == ("PCMU",) and not info.receives_opus
