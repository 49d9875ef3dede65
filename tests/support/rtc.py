"""Helpers shared by the media tests: loopback peer connections and tagged frames."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

TAG_BITS = 16
TAG_BLOCK = 16  # pixels per bit square; survives lossy coding at any sane bitrate


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def connect(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


async def video_offer(direction: str = "recvonly") -> str:
    """A real offer (aiortc's) of one video section, to POST to /whep (``recvonly``) or
    /whip (``sendonly``) by hand."""
    pc = new_pc()
    pc.addTransceiver("video", direction=direction)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


def tagged_rgb(tag: int, width: int, height: int) -> npt.NDArray[np.uint8]:
    """A frame whose top row of squares spells ``tag`` in binary (white = 1)."""
    img = np.full((height, width, 3), 64, dtype=np.uint8)
    img[height // 2 :, :, 1] = 160  # some structure below the tag
    for bit in range(TAG_BITS):
        if tag >> bit & 1:
            x = bit * TAG_BLOCK
            img[0:TAG_BLOCK, x : x + TAG_BLOCK] = 255
        else:
            x = bit * TAG_BLOCK
            img[0:TAG_BLOCK, x : x + TAG_BLOCK] = 0
    return img


def read_tag(rgb: npt.NDArray[np.uint8]) -> int:
    tag = 0
    for bit in range(TAG_BITS):
        x = bit * TAG_BLOCK
        block = rgb[4 : TAG_BLOCK - 4, x + 4 : x + TAG_BLOCK - 4]
        if block.mean() > 128:
            tag |= 1 << bit
    return tag


class QueueVideoTrack(MediaStreamTrack):
    """A video track that sends exactly the frames the test puts, when it puts them."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._queue: asyncio.Queue[av.VideoFrame | None] = asyncio.Queue()
        self.sent_at: dict[int, float] = {}

    def put(self, tag: int, width: int, height: int) -> None:
        frame = av.VideoFrame.from_ndarray(tagged_rgb(tag, width, height), format="rgb24")
        frame.pts = tag * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        self.sent_at[tag] = time.perf_counter()
        self._queue.put_nowait(frame)

    async def recv(self) -> av.VideoFrame:
        frame = await self._queue.get()
        if frame is None:
            raise MediaStreamError
        return frame


async def collect_tags(
    track: MediaStreamTrack, arrivals: dict[int, float], frames: list[av.VideoFrame] | None = None
) -> None:
    """Record when each tagged frame arrives on ``track`` until it ends."""
    try:
        while True:
            frame = await track.recv()
            assert isinstance(frame, av.VideoFrame)
            tag = read_tag(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8))
            arrivals.setdefault(tag, time.perf_counter())
            if frames is not None:
                frames.append(frame)
    except MediaStreamError:
        pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
