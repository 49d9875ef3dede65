"""The clients' sound into the model: WHIP audio in, through an identity model, WHEP audio
out, against a real daemon with real aiortc clients and real Opus both ways."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from typing import Any

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, VideoStreamTrack

from reactor.client import Client, PcmTrack, Viewer, WhipError
from tests.support.daemon import Daemon, wait_for_async
from tests.support.tracks import SquareTrack

pytestmark = pytest.mark.timeout(180)

TONE_HZ, LEVEL = 1000.0, 0.4
W, H = 320, 240
SQUARE = (20, 220, 40)


def echo_config(**audio: Any) -> dict[str, Any]:
    return {"model": {"module": "audio_models:EchoAV"},
            "video": {"width": W, "height": H, "fps": 30},
            "audio": {"input": True, "output": True, "sample_rate": 16000, **audio}}


def tone(rate: int = 48000, seconds: float = 1.0) -> np.ndarray:
    """A whole number of 1 kHz periods, so the looped tone has no seam."""
    t = np.arange(int(rate * seconds)) / rate
    return (LEVEL * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def mono(frame: av.AudioFrame) -> np.ndarray:
    """aiortc's decoded Opus (s16 interleaved stereo, 48 kHz) as float mono."""
    assert frame.format.name == "s16" and frame.sample_rate == 48000
    pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).astype(np.float32)
    return pcm.mean(axis=1) / 32768.0


async def listen(viewer: Viewer, seconds: float) -> np.ndarray:
    """``seconds`` of the viewer's sound, from now."""
    parts: list[np.ndarray] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        parts.append(mono(await asyncio.wait_for(viewer.recv_audio(), 5)))
    return np.concatenate(parts)


async def drain_video(viewer: Viewer) -> None:
    """Read (and drop) the viewer's frames, so aiortc's queue does not grow."""
    while True:
        await viewer.recv()


def tone_share(pcm: np.ndarray, rate: int = 48000) -> tuple[float, float]:
    """(the dominant frequency, the share of the energy within 50 Hz of TONE_HZ)."""
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    band = np.abs(freqs - TONE_HZ) <= 50
    return float(freqs[np.argmax(spectrum)]), float(spectrum[band].sum() / spectrum.sum())


def block_levels(pcm: np.ndarray) -> np.ndarray:
    """The RMS of each 20 ms (960 samples at 48 kHz)."""
    blocks = pcm[: len(pcm) // 960 * 960].reshape(-1, 960)
    levels: np.ndarray = np.sqrt((blocks**2).mean(axis=1))
    return levels


async def hear_the_tone(viewer: Viewer) -> np.ndarray:
    """Wait until the viewer hears the tone without a break for 0.5 s (the stream has
    settled after it started), then return 2 s of it."""

    async def tone_arrived() -> bool:
        return float(block_levels(await listen(viewer, 0.5)).min()) > LEVEL / 4

    await wait_for_async(tone_arrived, 20, "the tone on the WHEP audio track")
    return await listen(viewer, 2.0)


def assert_the_same_tone(pcm: np.ndarray, pipeline: dict[str, Any]) -> None:
    """``pipeline``: the daemon's status of then, shown when the sound is not right."""
    peak, share = tone_share(pcm)
    assert abs(peak - TONE_HZ) < 10, peak
    assert share > 0.9, share
    # Level kept through Opus, 48 -> 16 kHz and back: sine RMS is LEVEL / sqrt(2).
    rms = float(np.sqrt(np.mean(pcm**2)))
    assert abs(rms - LEVEL / np.sqrt(2)) < 0.25 * LEVEL, rms
    # Continuous: at least 90 % of the 20 ms blocks carry the tone. (On a quiet machine
    # none is silent; on a loaded 2-core box a busy process now and then misses a chunk.)
    levels = block_levels(pcm)
    rings = [r for r in pipeline["rings"] if r["name"].startswith("audio")]
    assert float(np.mean(levels > LEVEL / 4)) >= 0.9, (
        f"silent 20 ms blocks {np.flatnonzero(levels <= LEVEL / 4).tolist()} of "
        f"{len(levels)}; audio {pipeline['audio']}, rings {rings}")


def test_whip_tone_through_an_identity_model_comes_back_on_whep(start_daemon) -> None:
    d: Daemon = start_daemon(echo_config())

    async def run() -> None:
        async with Client(d.url) as client:
            schema = await client.schema()
            assert schema["audio"] == {"output": True, "input": True, "sample_rate": 16000,
                                       "channels": 1}
            async with (
                await client.publish(SquareTrack(W, H, SQUARE),
                                     audio=PcmTrack(tone(), 48000, loop=True)),
                await client.watch() as viewer,  # the schema says it speaks: sound asked
            ):
                assert viewer.audio_track is not None
                frames = asyncio.ensure_future(drain_video(viewer))
                try:
                    heard = await hear_the_tone(viewer)
                    assert_the_same_tone(heard, (await client.status())["pipeline"])
                    assert (await client.status())["session"]["sender"] is True

                    async def fed_at_16k() -> bool:  # measured over a window of heartbeats
                        audio = (await client.status())["pipeline"]["audio"]
                        return bool(15000 < audio["rate_in_hz"] < 17000)

                    # The model's ring is fed 16 kHz: 16000 samples a second.
                    await wait_for_async(fed_at_16k, 10, "audio into the model at 16 kHz")
                finally:
                    frames.cancel()
                # The picture passes through as well.
                f = await asyncio.wait_for(viewer.recv(), 5)
                a = f.to_ndarray(format="rgb24")
                square = a[H // 4 + 8: H // 2 - 8, W // 4 + 8: W // 2 - 8].reshape(-1, 3)
                assert np.allclose(square.mean(axis=0), SQUARE, atol=30)

    asyncio.run(run())


def test_a_sender_with_audio_and_no_video_starts_the_session_and_is_heard(
        start_daemon) -> None:
    d: Daemon = start_daemon(echo_config(sample_rate=48000, channels=2))

    async def run() -> None:
        async with Client(d.url) as client:
            async with (
                await client.publish(audio=PcmTrack(tone(), 48000, loop=True)) as pub,
                await client.watch(audio=True) as viewer,
            ):
                kinds = {t.kind: t.currentDirection for t in pub.pc.getTransceivers()}
                assert kinds == {"audio": "sendonly"}
                heard = await hear_the_tone(viewer)
                assert_the_same_tone(heard, (await client.status())["pipeline"])
                status = await client.status()
                assert status["session"]["state"] == "live"
                assert status["session"]["sender"] is True

    asyncio.run(run())


def test_a_sender_with_video_and_no_audio_works_with_audio_input_on(start_daemon) -> None:
    d: Daemon = start_daemon(echo_config())

    async def run() -> None:
        async with Client(d.url) as client:
            async with (
                await client.publish(SquareTrack(W, H, SQUARE)),
                await client.watch(audio=True) as viewer,
            ):
                await asyncio.wait_for(viewer.recv(), 15)
                for _ in range(10):
                    f = await asyncio.wait_for(viewer.recv(), 5)
                a = f.to_ndarray(format="rgb24")
                square = a[H // 4 + 8: H // 2 - 8, W // 4 + 8: W // 2 - 8].reshape(-1, 3)
                assert np.allclose(square.mean(axis=0), SQUARE, atol=30)
                assert (await client.status())["session"]["sender"] is True

                async def receiving() -> bool:  # the input rate is measured over a window
                    return bool((await client.status())["pipeline"]["fps_in"] > 10)

                await wait_for_async(receiving, 5, "an input rate above 10 fps")
                # The model heard nothing, so the viewer hears silence (the track is up).
                quiet = await listen(viewer, 0.5)
                assert float(np.abs(quiet).max()) < 0.01

    asyncio.run(run())


def test_sound_sent_to_a_model_that_does_not_listen_is_declined(start_daemon) -> None:
    d: Daemon = start_daemon({"model": {"module": "audio_models:EchoAV"},
                              "video": {"width": W, "height": H, "fps": 30}})

    async def run() -> None:
        async with Client(d.url) as client:
            assert (await client.schema())["audio"]["input"] is False
            async with await client.publish(SquareTrack(W, H, SQUARE),
                                            audio=PcmTrack(tone(), 48000, loop=True)) as pub:
                kinds = {t.kind: t.currentDirection for t in pub.pc.getTransceivers()}
                # The daemon answers the audio section inactive: nothing is sent or decoded.
                assert kinds == {"video": "sendonly", "audio": "inactive"}
                async with await client.watch() as viewer:
                    assert viewer.audio_track is None
                    await asyncio.wait_for(viewer.recv(), 15)
            # Sound alone, to a model that does not listen, is refused with the reason.
            with pytest.raises(WhipError, match=r"does not listen \(audio.input is false\)"):
                await client.publish(audio=PcmTrack(tone(), 48000))

    asyncio.run(run())


class FlashCamera(VideoStreamTrack):
    """Grey frames at 30 fps; once a second three white ones. ``flashes`` holds when each
    first white frame was handed to the encoder (its capture, for a camera)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self.flashes: list[int] = []
        self.grey = np.full((H, W, 3), 60, np.uint8)
        self.white = np.full((H, W, 3), 235, np.uint8)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        white = self.n % 30 < 3 and self.n >= 30
        if white and self.n % 30 == 0:
            self.flashes.append(time.perf_counter_ns())
        f = av.VideoFrame.from_ndarray(self.white if white else self.grey, format="rgb24")
        f.pts, f.time_base = pts, time_base
        self.n += 1
        return f


class BeepMicrophone(MediaStreamTrack):
    """A live microphone hearing a 1 kHz beep of 100 ms at each of ``camera``'s flashes: a
    20 ms frame sent at ``S`` holds the sound of ``[S - 20 ms, S)``."""

    kind = "audio"

    def __init__(self, camera: FlashCamera) -> None:
        super().__init__()
        self.camera = camera
        self.sent = 0
        self.start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.sent * 0.02 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        now = time.perf_counter_ns()
        t = now - 20_000_000 + np.arange(960) * 1_000_000_000 // 48000
        on = np.zeros(960, bool)
        for f in self.camera.flashes[-2:]:
            on |= (t >= f) & (t < f + 100_000_000)
        wave = np.where(on, 0.5 * np.sin(2 * np.pi * TONE_HZ * t / 1e9), 0.0)
        s16 = np.repeat((wave * 32767).astype(np.int16)[:, None], 2, axis=1)
        frame = av.AudioFrame.from_ndarray(s16.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, self.sent * 960
        frame.time_base = fractions.Fraction(1, 48000)
        self.sent += 1
        return frame


def test_sound_and_picture_that_arrive_together_reach_the_model_at_the_same_time(
        start_daemon) -> None:
    d: Daemon = start_daemon({"model": {"module": "audio_models:AVProbe"},
                              "video": {"width": W, "height": H, "fps": 30},
                              "audio": {"input": True, "sample_rate": 16000}})

    async def run() -> list[float]:
        flashes: list[float] = []
        beeps: list[float] = []

        async def collect(client: Client) -> None:
            async for ev in client.events():
                data = ev.get("data")
                if ev.get("type") == "message" and isinstance(data, dict):
                    if "flash" in data:
                        flashes.append(float(data["flash"]))
                    elif "beep" in data:
                        beeps.append(float(data["beep"]))

        async with Client(d.url) as client:
            camera = FlashCamera()
            listener = asyncio.ensure_future(collect(client))
            try:
                async with await client.publish(camera, audio=BeepMicrophone(camera)):

                    async def heard() -> bool:
                        return len(beeps) >= 6 and len(flashes) >= 6

                    await wait_for_async(heard, 30, "six beeps and six flashes in the model")
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
        # Each beep against the flash nearest to it (the first ones may have been missed).
        return [(b - min(flashes, key=lambda f: abs(f - b))) * 1000 for b in beeps]

    offsets_ms = asyncio.run(run())
    # aiortc releases sound 80 ms after it arrived (RECEIVER_PREFETCH); had ingress not
    # taken that off, the beeps would come 80 ms after their flashes.
    assert abs(float(np.median(offsets_ms))) < 30, offsets_ms
