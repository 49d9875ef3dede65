"""Check WHIP/WHEP offers before aiortc parses them, and build non-trickle answers.

aiortc's SDP parser assumes well-formed input and fails with assorted exceptions (or
accepts nonsense); the ingress server is the only public listener, so an offer is
checked here first and rejected with :class:`SdpError` whose ``reason`` can go back to the
client in a 400 response.

Non-trickle answers: ``RTCPeerConnection.setLocalDescription`` awaits ICE gathering to
completion and writes every local candidate (and ``a=end-of-candidates``) into the
description before it returns (aiortc 1.16, ``rtcpeerconnection.py``), so
``pc.localDescription.sdp`` is already the complete answer WHIP/WHEP clients expect.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import H264Profile, parse_h264_profile_level_id

from reactor.errors import SdpError as SdpError  # defined there, exported here too
from reactor.media.encoder import Codec

#: Largest offer accepted. Browser offers with audio, video and data are ~5-12 KB.
MAX_OFFER_BYTES = 64 * 1024

_LINE = re.compile(r"^[a-z]=[^\x00-\x08\x0b-\x1f\x7f]*$")
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([A-Za-z0-9_.-]+)/(\d+)")
_FMTP = re.compile(r"^a=fmtp:(\d+) (.*)$")
_H264_PROFILES = {H264Profile.PROFILE_BASELINE, H264Profile.PROFILE_CONSTRAINED_BASELINE}


@dataclass(frozen=True)
class OfferInfo:
    """What an offer asks for, as far as choosing a codec and answering goes."""

    video_codecs: tuple[str, ...]
    """Video codec names offered, upper case, in the offer's order (``H264``, ``VP8``…)."""
    codec: Codec
    """The codec to use: ``h264`` when usable H.264 is offered, else ``vp8``."""
    video_direction: str
    """``sendonly`` for a WHIP publisher, ``recvonly`` for a WHEP viewer, or ``sendrecv``."""
    has_audio: bool
    candidates: int
    """How many ``a=candidate`` lines the offer carries."""
    trickle_less: bool
    """True when the offer already carries its candidates (nothing to trickle later)."""
    media_kinds: tuple[str, ...] = field(default=())
    audio_direction: str = ""
    """The first audio section's direction (as ``video_direction``); ``""`` without one."""
    audio_codecs: tuple[str, ...] = ()
    """The first audio section's codec names, upper case, in the offer's order (``OPUS``…)."""

    @property
    def receives_opus(self) -> bool:
        """Whether the first audio section can receive Opus: ``recvonly`` or ``sendrecv``
        with an Opus payload type (what a WHEP viewer's sound needs)."""
        return self.audio_direction in ("recvonly", "sendrecv") and "OPUS" in self.audio_codecs


def validate_offer(text: str | bytes, max_bytes: int = MAX_OFFER_BYTES, *,
                   require_video: bool = True) -> OfferInfo:
    """Validate an SDP offer and describe it; raise :class:`SdpError` if it is unusable.

    With ``require_video=False`` an offer with audio and no video section is accepted
    (a WHIP client sending only sound); it is described with no video codecs and the
    video direction ``""``.
    """
    if isinstance(text, bytes):
        if len(text) > max_bytes:
            raise SdpError(f"offer is {len(text)} bytes, more than the limit of {max_bytes}")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError(f"offer is not UTF-8 text (byte {exc.start})") from None
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise SdpError(f"offer is more than the limit of {max_bytes} bytes")
    if not text.strip():
        raise SdpError("offer is empty")
    if "\x00" in text:
        raise SdpError("offer contains binary data (NUL bytes)")
    # RFC 8866 says CRLF; many tools send bare LF. Accept both.
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if lines[0] != "v=0":
        raise SdpError(f"offer must start with 'v=0', found {lines[0][:40]!r}")
    for number, line in enumerate(lines, 1):
        if not _LINE.match(line):
            raise SdpError(f"line {number} is not '<letter>=<value>' text: {line[:40]!r}")

    sections = _media_sections(lines)
    kinds = tuple(kind for kind, _ in sections)
    video = [body for kind, body in sections if kind == "video"]
    audio = [body for kind, body in sections if kind == "audio"]
    candidates = sum(1 for line in lines if line.startswith("a=candidate:"))
    audio_direction = _direction(audio[0]) if audio else ""
    audio_codecs = _codecs(audio[0]) if audio else ()
    if not video and audio and not require_video:
        return OfferInfo(video_codecs=(), codec="vp8", video_direction="", has_audio=True,
                         candidates=candidates, trickle_less=candidates > 0, media_kinds=kinds,
                         audio_direction=audio_direction, audio_codecs=audio_codecs)
    if not video:
        raise SdpError(f"offer has no 'm=video' section (media: {', '.join(kinds) or 'none'})")
    body = video[0]
    offered, usable_h264 = _video_codecs(body)
    if usable_h264:
        codec: Codec = "h264"
    elif "VP8" in offered:
        codec = "vp8"
    else:
        found = ", ".join(offered) or "none"
        hint = (
            " (H.264 needs packetization-mode=1 and a baseline profile)"
            if "H264" in offered
            else ""
        )
        raise SdpError(f"no supported video codec: need H264 or VP8, found {found}{hint}")

    return OfferInfo(
        video_codecs=offered,
        codec=codec,
        video_direction=_direction(body),
        has_audio="audio" in kinds,
        candidates=candidates,
        trickle_less=candidates > 0,
        media_kinds=kinds,
        audio_direction=audio_direction,
        audio_codecs=audio_codecs,
    )


def _direction(body: list[str]) -> str:
    direction = "sendrecv"
    for line in body:
        if line[2:] in ("sendonly", "recvonly", "sendrecv", "inactive"):
            direction = line[2:]
    return direction


def split_sections(lines: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """SDP ``lines`` as the session part and the media sections, each ``(kind, lines)``
    with its ``m=`` line first: reactor's one SDP scanner, for offers (validated here
    before aiortc's parser sees them) and for the edits of our answers
    (:func:`reactor.media.rate.with_start_bitrate`). Joining the parts gives ``lines``
    back. A malformed ``m=`` line raises :class:`SdpError`."""
    head: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("m="):
            parts = line[2:].split()
            if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
                raise SdpError(f"malformed media line: {line[:60]!r}")
            sections.append((parts[0], [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            head.append(line)
    return head, sections


def rtpmap(line: str) -> tuple[str, str] | None:
    """``(payload type, codec name)`` of an ``a=rtpmap:`` line, else ``None``."""
    m = _RTPMAP.match(line)
    return (m.group(1), m.group(2)) if m else None


def _media_sections(lines: list[str]) -> list[tuple[str, list[str]]]:
    return split_sections(lines)[1]


def _payload_types(body: list[str]) -> list[tuple[str, str]]:
    # (payload type, upper-case codec name) of the section's m= line, in its order.
    names = {m.group(1): m.group(2).upper() for line in body if (m := _RTPMAP.match(line))}
    return [(pt, names[pt]) for pt in body[0].split()[3:] if pt in names]


def _codecs(body: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for _, name in _payload_types(body)))


def _video_codecs(body: list[str]) -> tuple[tuple[str, ...], bool]:
    fmtp = {m.group(1): m.group(2) for line in body if (m := _FMTP.match(line))}
    usable_h264 = any(name == "H264" and _h264_usable(fmtp.get(pt, ""))
                      for pt, name in _payload_types(body))
    return _codecs(body), usable_h264


def _h264_usable(fmtp: str) -> bool:
    # aiortc's negotiation (is_codec_compatible) matches H.264 only on an equal
    # packetization-mode, and it packetizes only mode 1 (non-interleaved), and on an
    # equal profile: the (constrained) baseline it offers. An absent profile-level-id
    # means 42e01f (RFC 6184 default as aiortc reads it).
    params = dict(p.strip().partition("=")[::2] for p in fmtp.split(";") if p.strip())
    if params.get("packetization-mode") != "1":
        return False
    try:
        profile = parse_h264_profile_level_id(params.get("profile-level-id", "42e01f"))[0]
    except ValueError:
        return False
    return profile in _H264_PROFILES


def codec_preferences(codec: Codec) -> list[RTCRtpCodecCapability]:
    """aiortc video capabilities for ``codec`` (with its RTX), for ``setCodecPreferences``.

    A transceiver that sends pre-encoded packets must negotiate exactly the codec of the
    packets: aiortc's sender packs whatever it is given with the negotiated codec.
    """
    mime = {"h264": "video/H264", "vp8": "video/VP8"}[codec]
    caps = RTCRtpSender.getCapabilities("video").codecs
    chosen = [c for c in caps if c.mimeType == mime]
    chosen += [c for c in caps if c.mimeType == "video/rtx"]
    return chosen


async def answer_sdp_for(pc: RTCPeerConnection, announced: Sequence[str] = ()) -> str:
    """Create and apply ``pc``'s answer and return it as complete, non-trickle SDP.

    Call after ``setRemoteDescription`` and after adding tracks / setting codec preferences.
    ``announced`` (``server.announced_addresses``) replaces the host candidates'
    addresses, see :func:`announce_host_candidates`. The workers answer through
    :func:`reactor.workers.negotiation.answer_offer`, which wraps this and says whose
    fault a failure is (the offer's or ours).
    """
    await pc.setLocalDescription(await pc.createAnswer())
    # setLocalDescription has gathered every candidate and written them into the SDP.
    sdp: str = pc.localDescription.sdp
    return announce_host_candidates(sdp, announced) if announced else sdp


def announce_host_candidates(sdp: str, announced: Sequence[str]) -> str:
    """Write ``announced`` addresses into ``sdp``'s host candidates in place of the
    interface addresses (a public address under 1:1 NAT).

    Each host candidate becomes one candidate per announced address of the same IP
    family, same port, component and transport; a host candidate of a family with no
    announced address is left out (its address is a private one). Server-reflexive and
    relay candidates are kept as they are. A ``c=`` line that named a replaced address
    names the media section's first candidate address after the rewrite. The daemon's
    sockets stay bound to the interface addresses: the NAT maps the announced address to
    them, and checks arriving there are matched by socket, not by address.
    """
    by_family: dict[int, list[str]] = {4: [], 6: []}
    for address in announced:
        ip = ipaddress.ip_address(address)
        by_family[ip.version].append(str(ip))
    out: list[str] = []
    replaced: set[str] = set()
    seen: set[tuple[str, ...]] = set()
    eol = "\r\n" if "\r\n" in sdp else "\n"
    for line in sdp.split(eol):
        parts = line.split()
        if line.startswith("a=candidate:") and len(parts) >= 8 and parts[7] == "host":
            try:
                version = ipaddress.ip_address(parts[4]).version
            except ValueError:
                out.append(line)  # an mDNS name: not an interface address
                continue
            replaced.add(parts[4])
            for address in by_family[version]:
                new = [*parts[:4], address, *parts[5:]]
                key = (new[1], new[2], new[4], new[5])
                if key not in seen:
                    seen.add(key)
                    out.append(" ".join(new))
            continue
        out.append(line)
    return eol.join(_fix_connection_lines(out, replaced))


def _fix_connection_lines(lines: list[str], replaced: set[str]) -> list[str]:
    # A section's c= line comes before its candidates: look ahead for the first one.
    fixed = list(lines)
    for i, line in enumerate(lines):
        parts = line.split()
        if not (line.startswith("c=IN ") and len(parts) == 3 and parts[2] in replaced):
            continue
        new = "c=IN IP4 0.0.0.0"
        for later in lines[i + 1:]:
            if later.startswith("m="):
                break
            cand = later.split()
            if later.startswith("a=candidate:") and len(cand) >= 6:
                version = ipaddress.ip_address(cand[4]).version if _is_ip(cand[4]) else 4
                new = f"c=IN IP{version} {cand[4]}"
                break
        fixed[i] = new
    return fixed


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
