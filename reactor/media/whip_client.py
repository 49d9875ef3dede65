"""A small asyncio WHIP (RFC 9725) and WHEP client on aiortc and aiohttp.

Both send one non-trickle offer (aiortc's ``setLocalDescription`` gathers every candidate
first), expect ``201 Created`` with the answer as ``application/sdp`` and the session's
resource URL in ``Location``, and end the session with ``DELETE`` on that URL
(:func:`delete_resource`). ``token`` becomes ``Authorization: Bearer <token>``.

With no ``configuration`` the peer connection uses no STUN server (aiortc's default is a
public Google one): right for loopback and LANs, and nothing leaves the machine unasked.
"""

from __future__ import annotations

import logging
from urllib.parse import urljoin

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from reactor.errors import ReactorError
from reactor.media.encoder import Codec
from reactor.media.sdp import codec_preferences

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0


class WhipError(ReactorError):
    """A WHIP/WHEP request failed; ``status`` is the HTTP status (0 if none came back)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def _headers(token: str | None, content_type: str | None = None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if content_type:
        headers["Content-Type"] = content_type
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def _exchange(
    pc: RTCPeerConnection, url: str, token: str | None, timeout_s: float
) -> str:
    """POST pc's offer to ``url``, apply the answer, return the absolute resource URL."""
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(url, data=offer, headers=_headers(token, "application/sdp")) as resp,
        ):
            body = await resp.text()
            if resp.status != 201:
                raise WhipError(
                    f"POST {url} answered {resp.status} (expected 201): {body[:200]}",
                    resp.status,
                )
            location = resp.headers.get("Location")
            if not location:
                raise WhipError(f"POST {url} answered 201 without a Location header", 201)
            if not resp.content_type.startswith("application/sdp"):
                raise WhipError(
                    f"POST {url} answered {resp.content_type!r}, expected application/sdp",
                    201,
                )
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise WhipError(f"POST {url} failed: {exc!r}") from exc
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    # RFC 9725: Location may be relative to the endpoint URL.
    return urljoin(url, location)


async def whep_watch(
    url: str,
    token: str | None = None,
    *,
    codec: Codec | None = None,
    configuration: RTCConfiguration | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[RTCPeerConnection, MediaStreamTrack, str]:
    """Start watching a WHEP endpoint: returns ``(pc, video_track, resource_url)``.

    ``codec`` restricts the offer to ``"h264"`` or ``"vp8"``; by default both are offered
    (H.264 first). ``await track.recv()`` yields decoded ``av.VideoFrame``\\ s. Close with
    :func:`delete_resource` and ``await pc.close()``.
    """
    pc = RTCPeerConnection(configuration or RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        if codec is not None:
            transceiver.setCodecPreferences(codec_preferences(codec))
        resource = await _exchange(pc, url, token, timeout_s)
        return pc, transceiver.receiver.track, resource
    except BaseException:
        await pc.close()
        raise


async def whip_publish(
    url: str,
    track: MediaStreamTrack,
    token: str | None = None,
    *,
    codec: Codec | None = None,
    configuration: RTCConfiguration | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[RTCPeerConnection, str]:
    """Publish ``track`` to a WHIP endpoint: returns ``(pc, resource_url)``."""
    pc = RTCPeerConnection(configuration or RTCConfiguration(iceServers=[]))
    try:
        transceiver: RTCRtpTransceiver = pc.addTransceiver(track, direction="sendonly")
        if codec is not None:
            transceiver.setCodecPreferences(codec_preferences(codec))
        resource = await _exchange(pc, url, token, timeout_s)
        return pc, resource
    except BaseException:
        await pc.close()
        raise


async def delete_resource(
    resource_url: str, token: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> None:
    """End a WHIP/WHEP session (``DELETE`` its resource URL). 404 counts as already gone."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.delete(resource_url, headers=_headers(token)) as resp,
        ):
            if resp.status not in (200, 204, 404):
                body = await resp.text()
                raise WhipError(
                    f"DELETE {resource_url} answered {resp.status}: {body[:200]}", resp.status
                )
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise WhipError(f"DELETE {resource_url} failed: {exc!r}") from exc
