"""The REMB fast start: a WHIP sender is told a camera's rate from its first packets."""

from __future__ import annotations

import pytest
from aiortc import rate

from reactor.media.rate import (
    ORIGINAL_INIT,
    START_BITRATE_BPS,
    enable_fast_start,
    with_start_bitrate,
)


def _abs_send_time(seconds: float) -> int:
    """RTP abs-send-time: 6.18 fixed-point seconds in 24 bits."""
    return int(seconds * (1 << 18)) & 0xFFFFFF


@pytest.fixture
def fast_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # Undone after the test whether or not another test had installed it already.
    monkeypatch.setattr(rate.RemoteBitrateEstimator, "__init__",
                        rate.RemoteBitrateEstimator.__init__)
    enable_fast_start()


def _feed(
    estimator: rate.RemoteBitrateEstimator, seconds: float, *, queueing_ms_per_frame: float = 0
) -> list[int]:
    """Send 300 kbit/s at 30 fps (5 packets a frame) for ``seconds``; return every REMB."""
    rembs: list[int] = []
    delay = 0.0
    for frame in range(int(seconds * 30)):
        sent = frame / 30
        delay += queueing_ms_per_frame / 1000
        for _ in range(5):
            remb = estimator.add(
                arrival_time_ms=int((sent + delay) * 1000) + 10_000,
                abs_send_time=_abs_send_time(sent),
                payload_size=250,
                ssrc=1234,
            )
            if remb is not None:
                rembs.append(remb[0])
    return rembs


def test_stock_estimator_is_silent_for_its_first_seconds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the patch is for: aiortc alone sends no REMB for 3 s, then the start rate."""
    cls = rate.RemoteBitrateEstimator
    # Another test in this process may have installed reactor's patches: undo them here.
    monkeypatch.setattr(cls, "__init__", getattr(cls.__init__, ORIGINAL_INIT, cls.__init__))
    rembs = _feed(rate.RemoteBitrateEstimator(), 2.5)
    assert rembs == []


@pytest.mark.usefixtures("fast_start")
def test_fast_start_sends_the_start_rate_from_the_first_packet() -> None:
    rembs = _feed(rate.RemoteBitrateEstimator(), 1.0)
    assert rembs, "no REMB within the first second"
    assert rembs[0] >= START_BITRATE_BPS
    # Steady, not ramping down to the browser's 300 kbit/s start rate while it ramps up.
    assert min(rembs) >= START_BITRATE_BPS


@pytest.mark.usefixtures("fast_start")
def test_fast_start_still_backs_off_when_the_path_queues() -> None:
    """Each frame arrives 5 ms later than the one before: over-use lowers the estimate
    to 85 % of the measured throughput, far below the start rate."""
    rembs = _feed(rate.RemoteBitrateEstimator(), 4.0, queueing_ms_per_frame=5)
    assert rembs[0] >= START_BITRATE_BPS
    assert rembs[-1] < 1_000_000


ANSWER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=rtpmap:111 opus/48000/2",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103",
    "a=rtpmap:96 VP8/90000", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
    "a=rtpmap:102 H264/90000",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    "a=rtpmap:103 rtx/90000", "a=fmtp:103 apt=102", ""])


def test_start_bitrate_goes_on_every_video_codec_and_nothing_else() -> None:
    lines = with_start_bitrate(ANSWER, 2_500_000).split("\r\n")
    # VP8 had no fmtp line: one follows its rtpmap.
    vp8 = lines.index("a=rtpmap:96 VP8/90000")
    assert lines[vp8 + 1] == "a=fmtp:96 x-google-start-bitrate=2500"
    assert ("a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;"
            "profile-level-id=42e01f;x-google-start-bitrate=2500") in lines
    # Retransmission and audio formats are untouched.
    assert "a=fmtp:97 apt=96" in lines and "a=fmtp:103 apt=102" in lines
    assert "a=fmtp:111 minptime=10;useinbandfec=1" in lines
    assert sum("x-google-start-bitrate" in line for line in lines) == 2
