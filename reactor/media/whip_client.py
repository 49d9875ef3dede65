"""A small asyncio WHIP (RFC 9725) and WHEP client on aiortc and aiohttp.

Both send one non-trickle offer (aiortc's ``setLocalDescription`` gathers every candidate
first), expect ``201 Created`` with the answer as ``application/sdp`` and the session's
resource URL in ``Location``, and end the session with ``DELETE`` on that URL
(:func:`delete_resource`). ``token`` becomes ``Authorization: Bearer <token>``.

With no ``configuration`` the peer connection uses the STUN and TURN servers the endpoint
names: before the offer, an ``OPTIONS`` request reads its ``Link: <url>;
rel="ice-server"`` headers (RFC 9725 §4.6). aiortc gathers every candidate when the offer
is made and cannot take new servers afterwards, so the links of the ``201`` come too late
for it. An endpoint that names none gets none (aiortc's own default is a public Google
STUN server: nothing leaves the machine unasked).

``ssl`` is passed to aiohttp for ``https://`` endpoints: an ``ssl.SSLContext`` that
trusts the server's certificate, ``True`` (the system's trust store) or ``False`` (no
verification).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from ssl import SSLContext
from urllib.parse import urljoin

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from reactor.errors import LinkError
from reactor.errors import WhipError as WhipError  # defined there, exported here too
from reactor.media.encoder import Codec
from reactor.media.links import PUBLIC_URL_HEADER, parse_ice_servers
from reactor.media.sdp import codec_preferences

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0


def _headers(token: str | None, content_type: str | None = None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if content_type:
        headers["Content-Type"] = content_type
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def ice_servers(
    url: str,
    token: str | None = None,
    *,
    ssl: SSLContext | bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[RTCIceServer]:
    """The ICE servers a WHIP/WHEP endpoint names in its ``OPTIONS`` answer's ``Link``
    headers; none when it answers ``OPTIONS`` with anything but 200 or 204."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.options(url, headers=_headers(token), ssl=ssl) as resp,
        ):
            if resp.status not in (200, 204):
                logger.debug("OPTIONS %s answered %d: no ICE servers", url, resp.status)
                return []
            links = resp.headers.getall("Link", [])
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise WhipError(f"OPTIONS {url} failed: {exc!r}") from exc
    try:
        servers = parse_ice_servers(links)
    except LinkError as exc:
        raise WhipError(f"OPTIONS {url}: {exc}") from None
    return [
        RTCIceServer(urls=s.url, username=s.username, credential=s.credential,
                     credentialType="password")
        for s in servers
    ]


async def _configuration(
    configuration: RTCConfiguration | None, url: str, token: str | None,
    ssl: SSLContext | bool, timeout_s: float,
) -> RTCConfiguration:
    if configuration is not None:
        return configuration
    return RTCConfiguration(
        iceServers=await ice_servers(url, token, ssl=ssl, timeout_s=timeout_s))


async def _exchange(
    pc: RTCPeerConnection, url: str, token: str | None, timeout_s: float,
    ssl: SSLContext | bool = True, placed: Callable[[str], object] | None = None,
) -> str:
    """POST pc's offer to ``url``, apply the answer, return the absolute resource URL.
    ``placed`` is called with the answer's ``Reactor-Public-URL`` (the daemon that took
    the session, behind a balancer) when it has one."""
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(url, data=offer, headers=_headers(token, "application/sdp"),
                      ssl=ssl) as resp,
        ):
            body = await resp.text()
            if resp.status != 201:
                wait = _retry_after(resp.headers.get("Retry-After"))
                raise WhipError(
                    f"POST {url} answered {resp.status} (expected 201): {body[:200]}"
                    + ("" if wait is None else f"; retry after {wait:g} s"),
                    resp.status, wait,
                )
            location = resp.headers.get("Location")
            if not location:
                raise WhipError(f"POST {url} answered 201 without a Location header", 201)
            if not resp.content_type.startswith("application/sdp"):
                raise WhipError(
                    f"POST {url} answered {resp.content_type!r}, expected application/sdp",
                    201,
                )
            public_url = resp.headers.get(PUBLIC_URL_HEADER)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise WhipError(f"POST {url} failed: {exc!r}") from exc
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    if public_url and placed is not None:
        placed(public_url)
    # RFC 9725: Location may be relative to the endpoint URL.
    return urljoin(url, location)


def _retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` of delay-seconds (what reactor and HAProxy send), or ``None``
    (absent, or an HTTP date, which a live session's wait never needs)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())



async def whep_watch(
    url: str,
    token: str | None = None,
    *,
    codec: Codec | None = None,
    audio: bool = False,
    configuration: RTCConfiguration | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    ssl: SSLContext | bool = True,
    prepare: Callable[[RTCPeerConnection], object] | None = None,
    placed: Callable[[str], object] | None = None,
) -> tuple[RTCPeerConnection, MediaStreamTrack, str]:
    """Start watching a WHEP endpoint: returns ``(pc, video_track, resource_url)``.

    ``prepare`` is called with the peer connection before the offer is made (to open a
    data channel, say: WHEP has no renegotiation, so it must be in the first offer).
    ``placed`` is called with the daemon's ``server.public_url`` when its answer names one
    (``Reactor-Public-URL``): the session's later requests belong there.

    ``codec`` restricts the offer to ``"h264"`` or ``"vp8"``; by default both are offered
    (H.264 first). ``await track.recv()`` yields decoded ``av.VideoFrame``\\ s. With
    ``audio`` the offer also asks for sound; :func:`received_audio` gives its track when
    the answer carries one. Close with :func:`delete_resource` and ``await pc.close()``.
    """
    pc = RTCPeerConnection(await _configuration(configuration, url, token, ssl, timeout_s))
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        if codec is not None:
            transceiver.setCodecPreferences(codec_preferences(codec))
        if audio:
            pc.addTransceiver("audio", direction="recvonly")
        if prepare is not None:
            prepare(pc)
        resource = await _exchange(pc, url, token, timeout_s, ssl, placed)
        return pc, transceiver.receiver.track, resource
    except BaseException:
        await pc.close()
        raise


def received_audio(pc: RTCPeerConnection) -> MediaStreamTrack | None:
    """The audio track a negotiated WHEP session receives, or ``None`` when the offer
    asked for none or the answer carries none (the model does not speak)."""
    for t in pc.getTransceivers():
        if t.kind == "audio" and t.currentDirection in ("recvonly", "sendrecv"):
            track: MediaStreamTrack = t.receiver.track
            return track
    return None


async def whip_publish(
    url: str,
    track: MediaStreamTrack | None,
    token: str | None = None,
    *,
    codec: Codec | None = None,
    audio: MediaStreamTrack | None = None,
    configuration: RTCConfiguration | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    ssl: SSLContext | bool = True,
    placed: Callable[[str], object] | None = None,
) -> tuple[RTCPeerConnection, str]:
    """Publish the video ``track`` and/or the ``audio`` track to a WHIP endpoint: returns
    ``(pc, resource_url)``; ``placed`` as for :func:`whep_watch`."""
    if track is None and audio is None:
        raise ValueError("whip_publish needs a video track, an audio track, or both")
    for given, kind in ((track, "video"), (audio, "audio")):
        if given is not None and given.kind != kind:
            raise ValueError(f"whip_publish: the {kind} track given is of kind {given.kind!r}")
    pc = RTCPeerConnection(await _configuration(configuration, url, token, ssl, timeout_s))
    try:
        if track is not None:
            transceiver: RTCRtpTransceiver = pc.addTransceiver(track, direction="sendonly")
            if codec is not None:
                transceiver.setCodecPreferences(codec_preferences(codec))
        if audio is not None:
            pc.addTransceiver(audio, direction="sendonly")
        resource = await _exchange(pc, url, token, timeout_s, ssl, placed)
        return pc, resource
    except BaseException:
        await pc.close()
        raise


async def delete_resource(
    resource_url: str, token: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
    ssl: SSLContext | bool = True,
) -> None:
    """End a WHIP/WHEP session (``DELETE`` its resource URL). 404 counts as already gone."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.delete(resource_url, headers=_headers(token), ssl=ssl) as resp,
        ):
            if resp.status not in (200, 204, 404):
                body = await resp.text()
                raise WhipError(
                    f"DELETE {resource_url} answered {resp.status}: {body[:200]}", resp.status
                )
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise WhipError(f"DELETE {resource_url} failed: {exc!r}") from exc
