"""WHIP publish -> decode -> Broadcaster -> WHEP watch, over real HTTP and WebRTC on loopback.

The server below is a minimal stand-in for the ingress/egress workers built only from
reactor.media pieces, so this doubles as the integration test of those pieces.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np
import pytest
from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from reactor.media import jitter
from reactor.media.convert import frame_to_rgb
from reactor.media.sdp import SdpError, answer_sdp_for, validate_offer
from reactor.media.tracks import Broadcaster, add_encoded_track
from reactor.media.whip_client import WhipError, delete_resource, whep_watch, whip_publish
from tests.support.rtc import QueueVideoTrack, collect_tags, new_pc, percentile


class MiniServer:
    def __init__(self, width: int, height: int, token: str | None = None) -> None:
        self.width, self.height, self.token = width, height, token
        self.broadcaster = Broadcaster(width, height, bitrate_kbps=2000)
        self.sessions: dict[str, RTCPeerConnection] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.frames_in = 0
        app = web.Application()
        app.router.add_post("/whip", self.whip)
        app.router.add_post("/whep", self.whep)
        app.router.add_delete("/{kind:whip|whep}/{id}", self.delete)
        self.runner = web.AppRunner(app)
        self.url = ""

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for pc in list(self.sessions.values()):
            await pc.close()
        self.broadcaster.close()
        await self.runner.cleanup()

    def _check(self, request: web.Request) -> str:
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            raise web.HTTPUnauthorized(text="missing or wrong bearer token")
        return ""

    async def _offer(self, request: web.Request) -> tuple[str, str]:
        self._check(request)
        if request.content_type != "application/sdp":
            raise web.HTTPUnsupportedMediaType(text="expected application/sdp")
        text = await request.text()
        try:
            info = validate_offer(text)
        except SdpError as exc:
            raise web.HTTPBadRequest(text=exc.reason) from None
        return text, info.codec

    def _created(self, kind: str, pc: RTCPeerConnection, answer: str) -> web.Response:
        resource = uuid.uuid4().hex
        self.sessions[resource] = pc
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"/{kind}/{resource}"},
        )

    async def whip(self, request: web.Request) -> web.Response:
        offer, _ = await self._offer(request)
        pc = new_pc()
        pc.on("track", lambda track: self.tasks.append(asyncio.ensure_future(self._ingest(track))))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        return self._created("whip", pc, await answer_sdp_for(pc))

    async def _ingest(self, track: MediaStreamTrack) -> None:
        start = time.monotonic()
        try:
            while True:
                frame = await track.recv()
                rgb = frame_to_rgb(frame, self.width, self.height)  # type: ignore[arg-type]
                self.frames_in += 1
                self.broadcaster.push(rgb, int((time.monotonic() - start) * 90000))
        except MediaStreamError:
            pass

    async def whep(self, request: web.Request) -> web.Response:
        offer, codec = await self._offer(request)
        pc = new_pc()
        add_encoded_track(pc, self.broadcaster.add_viewer(codec))  # type: ignore[arg-type]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        return self._created("whep", pc, await answer_sdp_for(pc))

    async def delete(self, request: web.Request) -> web.Response:
        self._check(request)
        pc = self.sessions.pop(request.match_info["id"], None)
        if pc is None:
            raise web.HTTPNotFound(text="no such session")
        await pc.close()
        return web.Response(status=204)


async def _relay(width: int, height: int, frames: int) -> tuple[list[float], int]:
    """Publish ``frames`` tagged frames at 30 fps; return glass-to-glass ms and tags seen."""
    server = MiniServer(width, height, token="s3cret")
    await server.start()
    source = QueueVideoTrack()
    pub: RTCPeerConnection | None = None
    view: RTCPeerConnection | None = None
    arrivals: dict[int, float] = {}
    watcher: asyncio.Task[None] | None = None
    try:
        pub, pub_url = await whip_publish(server.url + "/whip", source, token="s3cret")
        view, track, view_url = await whep_watch(server.url + "/whep", token="s3cret")
        assert pub_url.startswith(server.url + "/whip/") and view_url.startswith(server.url)
        watcher = asyncio.ensure_future(collect_tags(track, arrivals))
        tag = 1
        deadline = time.monotonic() + 10
        while len(arrivals) < 3 and time.monotonic() < deadline:  # warm-up: connect, keyframe
            source.put(tag, width, height)
            tag += 1
            await asyncio.sleep(1 / 30)
        first = tag + 1
        for tag in range(first, first + frames):
            source.put(tag, width, height)
            await asyncio.sleep(1 / 30)
        last = first + frames - 1
        deadline = time.monotonic() + 2
        while last not in arrivals and time.monotonic() < deadline:  # in flight; may be lost
            await asyncio.sleep(0.01)
        measured = [t for t in range(first, first + frames) if t in arrivals]
        latencies = [(arrivals[t] - source.sent_at[t]) * 1000 for t in measured]
        assert server.broadcaster.frames_encoded == server.broadcaster.frames_pushed
        await delete_resource(view_url, token="s3cret")
        await delete_resource(pub_url, token="s3cret")
        with pytest.raises(WhipError) as err:  # gone: 404 is fine, 401 is not
            await delete_resource(pub_url, token="wrong")
        assert err.value.status == 401
        return latencies, len(measured)
    finally:
        if watcher:
            watcher.cancel()
        for pc in (pub, view):
            if pc is not None:
                await pc.close()
        await server.close()


def _compare(width: int, height: int, frames: int) -> tuple[float, float]:
    stock, seen_stock = asyncio.run(_relay(width, height, frames))
    jitter.enable_marker_bit_completion()
    marker, seen_marker = asyncio.run(_relay(width, height, frames))
    assert seen_stock >= frames * 0.8 and seen_marker >= frames * 0.8
    p50_stock, p50_marker = percentile(stock, 0.5), percentile(marker, 0.5)
    print(
        f"WHIP->decode->encode->WHEP {width}x{height}: glass-to-glass p50 "
        f"stock {p50_stock:.1f} ms, marker-bit {p50_marker:.1f} ms "
        f"(p90 {percentile(stock, 0.9):.1f} / {percentile(marker, 0.9):.1f})"
    )
    return p50_stock, p50_marker


@pytest.mark.timeout(90)
def test_whip_to_whep_marker_survives_and_marker_bit_saves_latency() -> None:
    p50_stock, p50_marker = _compare(640, 360, 60)
    # Two aiortc receive hops, each one frame interval (33 ms) faster with the patch.
    assert p50_marker + 30 < p50_stock


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_whip_to_whep_720p() -> None:
    p50_stock, p50_marker = _compare(1280, 720, 90)
    assert p50_marker < p50_stock


async def _errors() -> None:
    server = MiniServer(320, 240, token="t")
    await server.start()
    try:
        with pytest.raises(WhipError) as err:
            await whep_watch(server.url + "/whep", token=None)
        assert err.value.status == 401
        with pytest.raises(WhipError) as err:
            await whep_watch(server.url + "/nowhere", token="t")
        assert err.value.status == 404
        await server.runner.cleanup()
        with pytest.raises(WhipError) as err:
            await whep_watch(server.url + "/whep", token="t", timeout_s=2)
        assert err.value.status == 0
    finally:
        await server.close()


@pytest.mark.timeout(30)
def test_client_errors_carry_status() -> None:
    asyncio.run(_errors())


async def _busy(retry_after: str | None) -> WhipError:
    """A server that answers every offer 503, as a busy daemon or a full fleet does."""
    async def busy(request: web.Request) -> web.Response:
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        return web.json_response({"error": "busy: every daemon is busy"}, status=503,
                                 headers=headers)

    app = web.Application()
    app.router.add_post("/whep", busy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with pytest.raises(WhipError) as err:
            await whep_watch(f"http://127.0.0.1:{port}/whep")
        return err.value
    finally:
        await runner.cleanup()


@pytest.mark.timeout(30)
def test_a_busy_answer_says_when_to_retry() -> None:
    err = asyncio.run(_busy("5"))
    assert (err.status, err.retry_after_s) == (503, 5.0)
    assert str(err).endswith("; retry after 5 s"), str(err)
    # An HTTP date (no reactor or HAProxy sends one) or none: no figure to wait.
    assert asyncio.run(_busy("Wed, 21 Oct 2026 07:28:00 GMT")).retry_after_s is None
    assert asyncio.run(_busy(None)).retry_after_s is None


def test_publish_needs_a_track_and_each_of_its_kind() -> None:
    from reactor.media.pcm_track import PcmTrack

    async def run() -> None:
        with pytest.raises(ValueError, match="a video track, an audio track, or both"):
            await whip_publish("http://127.0.0.1:9/whip", None)
        with pytest.raises(ValueError, match="the audio track given is of kind 'video'"):
            await whip_publish("http://127.0.0.1:9/whip", None, audio=QueueVideoTrack())
        sound = PcmTrack(np.zeros(960, np.float32))
        with pytest.raises(ValueError, match="the video track given is of kind 'audio'"):
            await whip_publish("http://127.0.0.1:9/whip", sound)

    asyncio.run(run())
