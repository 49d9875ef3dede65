from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCSessionDescription
from media_testkit import QueueVideoTrack, new_pc

from reactor.media.sdp import SdpError, answer_sdp_for, codec_preferences, validate_offer

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
