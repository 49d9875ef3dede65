"""Tell browsers to play the daemon's video at once: the ``playout-delay`` RTP header extension.

A WebRTC receiver normally smooths playback: libwebrtc (Chromium) holds each decoded video
frame in its jitter buffer for a target delay it estimates from the measured jitter, and a
page can only lower that target (``RTCRtpReceiver.jitterBufferTarget = 0``), not switch the
smoothing off. The sender can: libwebrtc's *playout delay* header extension
(``http://www.webrtc.org/experiments/rtp-hdrext/playout-delay``) carries the minimum and
maximum playout delay the sender wants, each a 12-bit count of 10 ms (3 bytes: ``min << 12 |
max``). ``min = max = 0`` asks the receiver to render every frame as soon as it is decoded,
which is what an interactive stream wants (the extension's own README names "interactive
streaming (gaming, remote access)" as that case). A libwebrtc receiver applies the limits of
the frames that carry it, and keeps the last ones it saw; Chromium and Firefox both offer the
extension for video.

aiortc 1.16 knows neither side of it: :data:`aiortc.codecs.HEADER_EXTENSIONS` lists only
``mid`` and ``abs-send-time`` for video, so ``setRemoteDescription`` drops the browser's
``a=extmap`` line for it (``find_common_header_extensions`` keeps only URIs of that list),
the answer does not carry it, and ``aiortc.rtp.HeaderExtensionsMap`` could not write it
anyway. :func:`enable_playout_delay` (idempotent, installed by :func:`reactor.media.install`)
adds both:

- **negotiation**: ``aiortc.rtcpeerconnection.find_common_header_extensions`` (a module
  global, looked up at call time) keeps the remote's ``playout-delay`` entry, with the
  remote's id, when it matches aiortc's *video* list (``setRemoteDescription`` passes
  ``HEADER_EXTENSIONS[media.kind]`` itself: that identity is how the wrapper knows the
  kind). So the extension is answered for video only and only when the remote offered it;
  aiortc's own offers are unchanged (the daemon never offers; a program using
  :mod:`reactor.client` offers as stock aiortc does).
- **sending**: ``HeaderExtensionsMap.configure`` also notes the negotiated id, and
  ``HeaderExtensionsMap.set`` (which ``RtpPacket.serialize`` calls for every packet a
  sender sends, retransmissions included) adds the element ``min = max = 0`` to every
  packet of a sender whose parameters carry it: all of egress's video packets to a viewer
  that offered it. Every packet, not only keyframes: a receiver takes the limits from the
  frames that carry them, and a viewer that joins, loses a packet or restarts its decoder
  must still see them; it costs 4 bytes a packet.

**Not with sound.** When the stream carries the model's sound (``audio.output``), egress
turns the answer off (:func:`answer_playout_delay`): a browser keeps picture and sound in
step by delaying whichever is ahead, and the picture is the one that waits for the sound's
jitter buffer. With ``min = max = 0`` it cannot: Chromium then showed the picture 120 ms
before its sound. The viewers of a silent stream get it; those of a stream with sound get
lip sync and the video jitter buffer that comes with it.

WHIP (ingress receives) answers the extension too when a sender offers it. That is harmless
and deliberate: it only lets the *sender* stamp its packets, which aiortc's receiver ignores
(``HeaderExtensionsMap.get`` skips ids it does not know), and the daemon sends nothing on a
WHIP connection, so no packet of the daemon carries it there.
"""

from __future__ import annotations

import functools
from typing import Any

import aiortc.rtcpeerconnection as _pc_module
from aiortc.codecs import HEADER_EXTENSIONS
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, pack_header_extensions, unpack_header_extensions

__all__ = ["PLAYOUT_DELAY_URI", "ZERO_PLAYOUT_DELAY", "answer_playout_delay",
           "disable_playout_delay", "enable_playout_delay", "parse_playout_delay",
           "playout_delay_enabled"]

PLAYOUT_DELAY_URI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
#: The element's value: 12-bit minimum and 12-bit maximum delay (10 ms units), both 0.
ZERO_PLAYOUT_DELAY = b"\x00\x00\x00"

_PATCH_ATTR = "__reactor_playout_delay_original__"
_ID_ATTR = "_reactor_playout_delay_id"  # on a HeaderExtensionsMap: the negotiated id
_ELEMENT_ATTR = "_reactor_playout_delay_element"  # and its one-byte element, made once
_ONE_BYTE = 0xBEDE  # RFC 8285 one-byte header profile
_answer = [True]  # answer_playout_delay's switch, for this process


def parse_playout_delay(value: bytes) -> tuple[int, int]:
    """``(min_ms, max_ms)`` of a playout-delay element's 3-byte value."""
    if len(value) != 3:
        raise ValueError(f"a playout-delay element has 3 bytes, not {len(value)}")
    both = int.from_bytes(value, "big")
    return (both >> 12) * 10, (both & 0xFFF) * 10


def playout_delay_enabled() -> bool:
    """Whether :func:`enable_playout_delay` is installed in this process."""
    return hasattr(_pc_module.find_common_header_extensions, _PATCH_ATTR)


def answer_playout_delay(answer: bool) -> None:
    """Whether descriptions set from now on answer a remote's offer of the extension (on
    by default once :func:`enable_playout_delay` is installed; egress turns it off for a
    stream with sound, see the module docstring)."""
    _answer[0] = answer


def enable_playout_delay() -> None:
    """Answer a remote's video ``playout-delay`` extension and stamp ``min = max = 0`` on
    every packet of a video sender that negotiated it (see the module docstring).
    Idempotent; applies to descriptions set and senders started after the call."""
    if playout_delay_enabled():
        return
    _patch_negotiation()
    _patch_header_map()


def disable_playout_delay() -> None:
    """Undo :func:`enable_playout_delay` (tests, comparisons). Idempotent."""
    for owner, name in ((_pc_module, "find_common_header_extensions"),
                        (HeaderExtensionsMap, "configure"), (HeaderExtensionsMap, "set")):
        original = getattr(getattr(owner, name), _PATCH_ATTR, None)
        if original is not None:
            setattr(owner, name, original)


def _patch_negotiation() -> None:
    original = _pc_module.find_common_header_extensions

    @functools.wraps(original)
    def find_common_header_extensions(
        local_extensions: list[RTCRtpHeaderExtensionParameters],
        remote_extensions: list[RTCRtpHeaderExtensionParameters],
    ) -> list[RTCRtpHeaderExtensionParameters]:
        common = original(local_extensions, remote_extensions)
        # Identity, not equality: setRemoteDescription passes aiortc's own per-kind list,
        # and this is the only way to know the m-section's kind here.
        if _answer[0] and local_extensions is HEADER_EXTENSIONS["video"]:
            common.extend(rx for rx in remote_extensions
                          if rx.uri == PLAYOUT_DELAY_URI and rx not in common)
        return common

    setattr(find_common_header_extensions, _PATCH_ATTR, original)
    _pc_module.find_common_header_extensions = find_common_header_extensions


def _patch_header_map() -> None:
    original_configure = HeaderExtensionsMap.configure
    original_set = HeaderExtensionsMap.set

    @functools.wraps(original_configure)
    def configure(self: HeaderExtensionsMap, parameters: RTCRtpParameters) -> None:
        original_configure(self, parameters)
        for ext in parameters.headerExtensions:
            if ext.uri == PLAYOUT_DELAY_URI:
                setattr(self, _ID_ATTR, ext.id)
                if ext.id <= 14:
                    setattr(self, _ELEMENT_ATTR, bytes((ext.id << 4 | 2,)) + ZERO_PLAYOUT_DELAY)

    @functools.wraps(original_set)
    def set_(self: HeaderExtensionsMap, values: Any) -> tuple[int, bytes]:
        profile, value = original_set(self, values)
        x_id: int | None = getattr(self, _ID_ATTR, None)
        if x_id is None:
            return profile, value
        if x_id <= 14 and profile in (0, _ONE_BYTE):
            # The common case, without re-packing: a one-byte element of exactly 4 bytes
            # (id/length byte + 3 value bytes) put first keeps the block 4-byte aligned and
            # its padding at the end.
            element: bytes = getattr(self, _ELEMENT_ATTR)
            return _ONE_BYTE, element + value
        # A two-byte header block (an id above 14 somewhere): rebuild it.
        elements = unpack_header_extensions(profile, value)
        elements.append((x_id, ZERO_PLAYOUT_DELAY))
        return pack_header_extensions(elements)

    setattr(configure, _PATCH_ATTR, original_configure)
    setattr(set_, _PATCH_ATTR, original_set)
    HeaderExtensionsMap.configure = configure  # type: ignore[method-assign]
    HeaderExtensionsMap.set = set_  # type: ignore[method-assign]
