"""The model's sound through a real daemon to an aiortc WHEP viewer: Opus with the beep,
in sync with the picture by RTP timestamps and RTCP sender reports, and kept up across an
inference restart.

The model is the beeping TestPattern (``reactor.examples.pattern``, ``audio.output: true``):
a 1 kHz, 100 ms beep starts with the sound of each frame whose counter flashes (once a
second), and that frame's top-right square is white. The viewer is a stock aiortc peer
connection; the test only *observes* its receivers: the RTCP sender reports they receive
and the RTP origin aiortc subtracts from frame pts, to put every decoded frame and audio
sample on the sender's NTP clock as a browser's lip sync does.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import aiohttp
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.rtp import RtcpSrPacket

from reactor.examples.pattern import BEEP_HZ, BEEP_LEVEL, BEEP_S, flash_box
from reactor.proto import telemetry_pb2 as tpb
from tests.support.daemon import Daemon, wait_for

pytestmark = pytest.mark.timeout(240)

WIDTH, HEIGHT, FPS = 320, 240, 30
NTP_FRAC = float(1 << 32)


def pattern_config(**audio: Any) -> dict[str, Any]:
    return {"model": {"module": "reactor.examples.pattern:TestPattern"},
            "video": {"width": WIDTH, "height": HEIGHT, "fps": FPS},
            "audio": {"output": True, **audio}}


@dataclass
class StreamLog:
    """One receiver of the viewer, observed: sender reports and decoded frames."""

    receiver: RTCRtpReceiver
    rate: int
    reports: list[tuple[float, int]] = field(default_factory=list)  # (ntp s, rtp ts)
    frames: list[tuple[int, Any, float]] = field(default_factory=list)  # (pts, frame, at)

    def __post_init__(self) -> None:
        handle = self.receiver._handle_rtcp_packet

        async def observed(packet: Any) -> None:
            if isinstance(packet, RtcpSrPacket):
                info = packet.sender_info
                self.reports.append((info.ntp_timestamp / NTP_FRAC, info.rtp_timestamp))
            await handle(packet)

        self.receiver._handle_rtcp_packet = observed  # type: ignore[method-assign]

    def rtp_origin(self) -> int:
        # aiortc's receiver hands out frames with pts = RTP timestamp - the first one.
        origin = self.receiver._RTCRtpReceiver__timestamp_mapper._origin  # type: ignore[attr-defined]
        assert origin is not None, "no frame decoded yet"
        return int(origin)

    def ntp_of(self, pts: int) -> float:
        """The sender's NTP time (s) of a decoded frame's pts, by the latest sender report."""
        assert self.reports, "no RTCP sender report received"
        ntp, rtp = self.reports[-1]
        ts = (self.rtp_origin() + pts) & 0xFFFFFFFF
        delta = (ts - rtp + (1 << 31)) % (1 << 32) - (1 << 31)
        return ntp + delta / self.rate

    async def collect(self, until: float) -> None:
        track = self.receiver.track
        while time.monotonic() < until:
            frame = await asyncio.wait_for(track.recv(), 5)
            assert frame.pts is not None
            self.frames.append((frame.pts, frame, time.monotonic()))


def audio_direction(sdp: str) -> str:
    section = sdp.split("m=audio", 1)[1].split("m=", 1)[0]
    return next(d for d in ("sendonly", "recvonly", "sendrecv", "inactive")
                if f"a={d}" in section)


@asynccontextmanager
async def watch_with_audio(url: str, *, audio_mime: str = "audio/opus",
                           expect_audio: str = "sendonly",
                           ) -> AsyncIterator[tuple[StreamLog, StreamLog]]:
    """A WHEP viewer that offers to receive video and audio (``audio_mime`` only):
    ``(video, audio)`` stream logs. The answer's audio direction must be ``expect_audio``."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = pc.addTransceiver("video", direction="recvonly")
    audio = pc.addTransceiver("audio", direction="recvonly")
    capabilities = RTCRtpReceiver.getCapabilities("audio")
    assert capabilities is not None
    audio.setCodecPreferences([c for c in capabilities.codecs if c.mimeType == audio_mime])
    location = ""
    try:
        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as http, http.post(
            urljoin(url, "/whep"), data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as resp:
            body = await resp.text()
            assert resp.status == 201, body
            location = resp.headers["Location"]
        assert audio_direction(body) == expect_audio, body
        if expect_audio == "sendonly":
            # One media stream for both: what puts them in one sync group in a browser.
            streams = {line.split()[0] for line in body.splitlines()
                       if line.startswith("a=msid:")}
            assert len(streams) == 1, streams
        logs = (StreamLog(video.receiver, 90_000), StreamLog(audio.receiver, 48_000))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        yield logs
    finally:
        if location:
            async with aiohttp.ClientSession() as http:
                await http.delete(urljoin(url, location))
        await pc.close()


def audio_signal(received: list[tuple[int, Any, float]]) -> tuple[np.ndarray, int]:
    """Decoded audio frames as one mono float array and the pts of its first sample (the
    frames laid out by pts; a hole is silence)."""
    frames = sorted(((pts, f) for pts, f, _ in received), key=lambda x: x[0])
    first = frames[0][0]
    end = frames[-1][0] + frames[-1][1].samples
    out = np.zeros(end - first, np.float32)
    for pts, f in frames:
        pcm = f.to_ndarray().reshape(-1, len(f.layout.channels))[:, 0] / 32768.0
        out[pts - first:pts - first + len(pcm)] = pcm
    return out, first


def beep_onsets(pcm: np.ndarray, rate: int) -> list[int]:
    """Sample indexes where a beep starts: the level rises past a third of the beep's
    after at least 300 ms below it."""
    loud = np.flatnonzero(np.abs(pcm) > BEEP_LEVEL / 3)
    onsets: list[int] = []
    last = 0
    for i in loud:
        if not onsets or i - last > 0.3 * rate:
            onsets.append(int(i))
        last = int(i)
    return onsets


def dominant_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


def flash_pts(log: StreamLog) -> list[int]:
    """pts of the frames whose flash square is white, first of each run."""
    box = flash_box(HEIGHT, WIDTH)
    out: list[int] = []
    previous = False
    for pts, frame, _ in sorted(log.frames, key=lambda x: x[0]):
        white = frame.to_ndarray(format="rgb24")[box].mean() > 200
        if white and not previous:
            out.append(pts)
        previous = white
    return out


def offsets_ms(video: StreamLog, audio: StreamLog) -> list[float]:
    """Beep onset minus flash, on the sender's NTP clock, for each flash with a beep."""
    pcm, first = audio_signal(audio.frames)
    beeps = [audio.ntp_of(first + i) for i in beep_onsets(pcm, 48_000)]
    flashes = [video.ntp_of(p) for p in flash_pts(video)]
    out = []
    for flash in flashes:
        near = min(beeps, key=lambda b: abs(b - flash), default=None)
        if near is not None and abs(near - flash) < 0.5:
            out.append((near - flash) * 1000)
    return out


def arrival_offsets_ms(video: StreamLog, audio: StreamLog) -> list[float]:
    """When the frame holding each beep's onset was received minus when its flash frame
    was (what a receiver without lip sync would show; for the record, not asserted)."""
    pcm, first = audio_signal(audio.frames)
    arrivals = {pts: at for pts, _, at in audio.frames}
    starts = sorted(arrivals)
    beeps = []
    for i in beep_onsets(pcm, 48_000):
        holder = max(p for p in starts if p <= first + i)
        beeps.append((audio.ntp_of(first + i), arrivals[holder]))
    shown = {pts: at for pts, _, at in video.frames}
    out = []
    for pts in flash_pts(video):
        flash = video.ntp_of(pts)
        near = min(beeps, key=lambda b: abs(b[0] - flash), default=None)
        if near is not None and abs(near[0] - flash) < 0.5:
            out.append((near[1] - shown[pts]) * 1000)
    return out


async def gather(video: StreamLog, audio: StreamLog, seconds: float) -> None:
    until = time.monotonic() + seconds
    await asyncio.gather(video.collect(until), audio.collect(until))


def test_viewer_hears_the_beep_once_a_second_in_sync_with_the_flash(start_daemon) -> None:
    d: Daemon = start_daemon(pattern_config())

    async def run() -> list[float]:
        async with watch_with_audio(d.url) as (video, audio):
            await gather(video, audio, 6.5)
            pcm, _ = audio_signal(audio.frames)
            onsets = beep_onsets(pcm, 48_000)
            # One beep a second (the first second may be cut by the join).
            assert len(onsets) >= 5, onsets
            gaps = np.diff(onsets) / 48_000
            # Once a second on the stream's timeline. A frame's sound carries the frame's
            # pts, which is when the model made it: a model starved of CPU for 175 ms (CI's
            # two cores, early in the suite) moves its beep and its flash on together, so
            # one gap may be longer; each beep still sits on its flash (the offsets below).
            assert abs(float(np.median(gaps)) - 1.0) < 0.02 and gaps.min() > 0.98, gaps
            for at in onsets[1:]:
                beep = pcm[at:at + int(BEEP_S * 48_000 * 0.8)]
                assert abs(dominant_hz(beep, 48_000) - BEEP_HZ) < 25
                assert np.sqrt(np.mean(beep ** 2)) > BEEP_LEVEL / 3
            # Between beeps: silence.
            quiet = pcm[onsets[1] + int(0.2 * 48_000):onsets[2] - int(0.1 * 48_000)]
            assert np.abs(quiet).max() < 0.02
            print("beep - flash as received: "
                  f"{[round(o, 1) for o in arrival_offsets_ms(video, audio)]} ms")
            return offsets_ms(video, audio)

    offsets = asyncio.run(run())
    print(f"beep - flash on the sender's clock: {[round(o, 1) for o in offsets]} ms")
    # Status reports egress's side of it: 48 kHz going out, and the offset it measures.
    sound = d.status()["pipeline"]["audio"]
    print(f"status: {sound}")
    assert sound["output"] is True
    assert abs(sound["rate_out_hz"] - 48_000) < 4_800
    assert sound["av_offset_ms"] is not None and abs(sound["av_offset_ms"]) < 45
    assert len(offsets) >= 4, offsets
    assert abs(statistics.median(offsets)) <= 20, offsets
    assert max(abs(o) for o in offsets) <= 45, offsets


def test_resampled_model_sound_keeps_its_pitch_and_timing(start_daemon) -> None:
    """A model at 16 kHz: 1 kHz comes out at 1 kHz (no slow motion) once a second."""
    d: Daemon = start_daemon(pattern_config(sample_rate=16000))

    async def run() -> None:
        async with watch_with_audio(d.url) as (video, audio):
            await gather(video, audio, 4.5)
            pcm, _ = audio_signal(audio.frames)
            onsets = beep_onsets(pcm, 48_000)
            assert len(onsets) >= 3, onsets
            assert np.all(np.abs(np.diff(onsets) / 48_000 - 1.0) < 0.02), onsets
            beep = pcm[onsets[1]:onsets[1] + int(BEEP_S * 48_000 * 0.8)]
            assert abs(dominant_hz(beep, 48_000) - BEEP_HZ) < 25

    asyncio.run(run())


def test_inference_restart_keeps_the_audio_track_up_and_sound_resumes(start_daemon) -> None:
    d: Daemon = start_daemon(pattern_config())

    async def run() -> None:
        async with watch_with_audio(d.url) as (video, audio):
            await gather(video, audio, 2.5)
            old = d.worker_pids()["inference"]
            killed_at = time.monotonic()
            os.kill(old, signal.SIGKILL)
            await asyncio.gather(
                audio.collect(killed_at + 12),
                asyncio.to_thread(wait_for, lambda: d.worker("inference").pid not in (0, old)
                                  and d.worker("inference").state == tpb.WORKER_STATE_RUNNING, 30,
                                  "inference to restart"))
            # The audio track never stopped: packets (silence while the model was gone)
            # kept arriving, never more than a few windows apart.
            arrivals = [at for _, _, at in audio.frames if at > killed_at]
            assert arrivals and arrivals[-1] > killed_at + 11
            assert max(np.diff([killed_at, *arrivals])) < 0.3
            assert audio.receiver.track.readyState == "live"
            # And the beeps came back after the restart.
            pcm, _ = audio_signal([x for x in audio.frames if x[2] > killed_at + 1])
            assert len(beep_onsets(pcm, 48_000)) >= 2

    asyncio.run(run())


def test_without_audio_output_an_audio_section_is_answered_inactive(start_daemon) -> None:
    d = start_daemon({"video": {"width": WIDTH, "height": HEIGHT, "fps": FPS}})

    async def run() -> None:
        async with watch_with_audio(d.url, expect_audio="inactive") as (video, _):
            await gather(video, video, 1.0)  # the picture comes all the same
            assert len(video.frames) >= 10

    asyncio.run(run())


def test_an_offer_without_opus_gets_the_picture_and_no_sound(start_daemon) -> None:
    d = start_daemon(pattern_config())

    async def run() -> None:
        async with watch_with_audio(d.url, audio_mime="audio/PCMU",
                                    expect_audio="inactive") as (video, _):
            await video.collect(time.monotonic() + 1.0)
            assert len(video.frames) >= 10

    asyncio.run(run())
