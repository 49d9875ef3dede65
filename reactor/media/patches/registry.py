"""Every change reactor makes to aiortc/aioice, and every internal of theirs it reads.

One entry per concept. The code of each patch stays in the module named after what it
does for reactor (its docstring has the whole story); this list is the one place that
names its targets, the versions it was checked against, why it exists and how it is
applied and reverted. :func:`reactor.media.patches.install` checks every target here
before it applies any patch.

The entries import nothing at module level: ``apply``/``revert`` import their module when
called, so reading the list (the architecture test, the docs generator) loads no aiortc.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from reactor.media.patches.spec import Patch, Reading, Target

#: The aiortc versions the entries were checked against: the ends of the pin in
#: pyproject.toml (``make test-media-range`` runs the media tests at the low end).
AIORTC_CHECKED = ("1.16.0",)
#: The aioice versions, likewise.
AIOICE_CHECKED = ("0.12.0", "0.13.0")


def supported_versions() -> str:
    """The versions reactor supports, as advice: ``"aiortc 1.16.0 and aioice
    0.12.0-0.13.0"`` (a range by its ends, which are the pin's)."""
    def span(versions: tuple[str, ...]) -> str:
        return versions[0] if len(versions) == 1 else f"{versions[0]}-{versions[-1]}"
    return f"aiortc {span(AIORTC_CHECKED)} and aioice {span(AIOICE_CHECKED)}"


#: How many frames aiortc's audio receiver holds before releasing the oldest
#: (``JitterBuffer(capacity=16, prefetch=4)``); the ``audio-prefetch`` reading checks it.
AIORTC_AUDIO_PREFETCH = 4

_SENDER = "aiortc.rtcrtpsender:RTCRtpSender"
_CONNECTION = "aioice.ice:Connection"


def _call(module: str, function: str, *args: bool) -> Callable[[], None]:
    """``reactor.media.<module>.<function>(*args)``, imported when called: a patch's
    feature module (and the aiortc names it imports) loads only after :func:`check` has
    vetted it."""

    def call() -> None:
        getattr(importlib.import_module(f"reactor.media.{module}"), function)(*args)

    call.__qualname__ = f"reactor.media.{module}.{function}"
    return call


PATCHES: tuple[Patch, ...] = (
    Patch(
        name="rsa-cipher-suites",
        module="reactor.media.dtls",
        targets=(
            Target("aiortc.rtcdtlstransport:RTCCertificate._create_ssl_context",
                   params=(("self", "srtp_profiles"),), replaced=True),
        ),
        checked={"aiortc": AIORTC_CHECKED},
        why="aiortc's DTLS client offers ECDHE-ECDSA suites only, so a peer with an RSA "
        "certificate (GStreamer's webrtcbin) fails with \"no shared cipher\"; ECDHE-RSA "
        "suites are appended to aiortc's list",
        upstream="aiortc/aiortc#1392, aiortc/aiortc#1421 (declined)",
        apply=_call("dtls", "enable_rsa_cipher_suites"),
        revert=_call("dtls", "disable_rsa_cipher_suites"),
    ),
    Patch(
        name="marker-bit-completion",
        module="reactor.media.jitter",
        targets=(
            Target("aiortc.rtcrtpreceiver:JitterBuffer", replaced=True),
            Target("aiortc.jitterbuffer:JitterBuffer",
                   attrs=("_capacity", "_origin", "_packets", "_prefetch", "_is_video")),
            Target("aiortc.jitterbuffer:JitterBuffer._remove_frame",
                   params=(("self", "sequence_number"),)),
            Target("aiortc.jitterbuffer:JitterBuffer.remove", params=(("self", "count"),)),
            # Wrapped: a gap that holds the origin too long is given up for a keyframe.
            Target("aiortc.jitterbuffer:JitterBuffer.add", params=(("self", "packet"),)),
            Target("aiortc.jitterbuffer:JitterBuffer.__init__",
                   params=(("self", "capacity", "prefetch", "is_video"),)),
            # The depayloaded bitstream the receiver hangs on each packet, joined into frames.
            Target("aiortc.rtcrtpreceiver:RTCRtpReceiver", source=(r"packet\._data = ",)),
        ),
        checked={"aiortc": AIORTC_CHECKED},
        why="aiortc completes a video frame only when the next frame's first packet "
        "arrives, ignoring the RTP marker bit: every receive hop held each frame back one "
        "frame interval (33 ms at 30 fps); and a packet whose retransmission was lost "
        "held every later frame until 512 packets had passed (3.5 s of a WHIP camera at "
        "1.2 Mbit/s), where a frame incomplete for 0.3 s is now given up for a PLI",
        names=("_data",),
        apply=_call("jitter", "enable_marker_bit_completion"),
        revert=_call("jitter", "disable_marker_bit_completion"),
    ),
    Patch(
        name="fast-start",
        module="reactor.media.rate",
        targets=(
            Target("aiortc.rate:RemoteBitrateEstimator.__init__", params=(("self",),),
                   replaced=True),
            Target("aiortc.rate:RemoteBitrateEstimator", attrs=("rate_control",)),
            Target("aiortc.rate:AimdRateControl.set_estimate",
                   params=(("self", "bitrate", "now_ms"),)),
        ),
        checked={"aiortc": AIORTC_CHECKED},
        why="aiortc's bandwidth estimator (REMB) says nothing for 3 s, then starts from the "
        "browser's 300 kbit/s: a browser camera took 25-30 s to reach 720p; seeded with "
        "2.5 Mbit/s it speaks from the first packet",
        apply=_call("rate", "enable_fast_start"),
        revert=_call("rate", "disable_fast_start"),
    ),
    Patch(
        name="keyframe-requests",
        module="reactor.media.tracks",
        targets=(Target(f"{_SENDER}._send_keyframe", params=(("self",),), replaced=True),),
        checked={"aiortc": AIORTC_CHECKED},
        why="a viewer's PLI/FIR only sets a flag for the sender's own encoder, which a "
        "pre-encoded track does not use: the request reaches the shared encoder instead",
        apply=_call("tracks", "enable_keyframe_requests"),
        revert=_call("tracks", "disable_keyframe_requests"),
    ),
    Patch(
        name="pacing",
        module="reactor.media.pacer",
        targets=(
            Target("aiortc.rtcdtlstransport:RTCDtlsTransport._send_rtp",
                   params=(("self", "data"),), replaced=True),
            # Every RTP packet of a sender, retransmissions included, goes through the
            # transport's _send_rtp, awaited one at a time; abs-send-time is stamped
            # before (the pacer stamps it again when a packet waited).
            Target(f"{_SENDER}._run_rtp", named=False, source=(
                r"(?s)abs_send_time = .*?await self\.transport\._send_rtp\(packet_bytes\)",
            )),
            Target(f"{_SENDER}._retransmit", named=False,
                   source=(r"await self\.transport\._send_rtp\(",)),
        ),
        checked={"aiortc": AIORTC_CHECKED},
        why="aiortc sends every packet of a frame at once: on a 1.5 Mbit/s link with a "
        "200 ms queue a 720p keyframe overflowed the queue, every PLI brought another, and "
        "a high-entropy stream showed no frame in 20 s (9454 packets dropped); each viewer's "
        "packets now leave at 2.5x its bitrate",
        names=("_reactor_pacer",),
        apply=_call("pacer", "enable_pacing"),
        revert=_call("pacer", "disable_pacing"),
    ),
    Patch(
        name="viewer-feedback",
        module="reactor.media.bwe",
        targets=(
            Target(f"{_SENDER}._handle_rtcp_packet", params=(("self", "packet"),),
                   replaced=True),
            Target(_SENDER, attrs=("_ssrc",)),
        ),
        checked={"aiortc": AIORTC_CHECKED},
        why="aiortc hands a viewer's REMB to the sender's own encoder only and keeps its "
        "receiver reports' loss to itself: a pre-encoded stream could not follow the "
        "viewer's path, and a 4 Mbit/s stream on a 1.5 Mbit/s link showed no frame",
        apply=_call("bwe", "enable_viewer_feedback"),
        revert=_call("bwe", "disable_viewer_feedback"),
    ),
    Patch(
        name="playout-delay",
        module="reactor.media.playout",
        targets=(
            Target("aiortc.rtcpeerconnection:find_common_header_extensions",
                   params=(("local_extensions", "remote_extensions"),), replaced=True),
            Target("aiortc.codecs:HEADER_EXTENSIONS"),
            # The wrapper knows it answers for a remote offer by the local list being
            # HEADER_EXTENSIONS[kind] itself (an identity check), as aiortc passes it here.
            Target("aiortc.rtcpeerconnection:RTCPeerConnection.setRemoteDescription",
                   named=False,
                   source=(r"find_common_header_extensions\(\s*HEADER_EXTENSIONS\[media\.kind\]",)),
            Target("aiortc.rtp:HeaderExtensionsMap.configure", params=(("self", "parameters"),),
                   replaced=True),
            Target("aiortc.rtp:HeaderExtensionsMap.set", params=(("self", "values"),),
                   replaced=True),
        ),
        checked={"aiortc": AIORTC_CHECKED},
        why="aiortc drops a browser's playout-delay header extension from its answer and "
        "cannot write it; answered with min = max = 0, a browser renders each frame as soon "
        "as it is decoded (not for a stream with sound, which must stay in sync)",
        names=("_reactor_playout_delay_id", "_reactor_playout_delay_element"),
        apply=_call("playout", "enable_playout_delay"),
        revert=_call("playout", "disable_playout_delay"),
    ),
    Patch(
        name="session-clock-reports",
        module="reactor.media.clock",
        targets=(
            Target(f"{_SENDER}._next_encoded_frame", params=(("self", "codec"),), replaced=True),
            Target(f"{_SENDER}._send_rtcp", params=(("self", "packets"),), replaced=True),
            Target(_SENDER, attrs=("_ssrc", "_RTCRtpSender__rtp_timestamp",
                                   "_RTCRtpSender__lsr", "_RTCRtpSender__lsr_time")),
            # The origin is learned as R - t: the RTP loop adds it to each frame's timestamp
            # and asks for the next frame (once per loop) only after it sent every packet
            # of the previous one, remembering each packet's timestamp.
            Target(f"{_SENDER}._run_rtp", named=False, source=(
                r"\A(?!(?s:.*)_next_encoded_frame(?s:.*)_next_encoded_frame)",
                r"(?s)enc_frame = await self\._next_encoded_frame\(codec\)"
                r".*?timestamp = uint32_add\(timestamp_origin, enc_frame\.timestamp\)"
                r".*?for \w+, payload in enumerate\(enc_frame\.payloads\):"
                r".*?timestamp=timestamp,.*?self\.__rtp_timestamp = packet\.timestamp",
            )),
            # The SR the wrapper rewrites is built with the sender's SSRC, and its LSR is
            # set before _send_rtcp, whose wrapper then sets the one actually sent.
            Target(f"{_SENDER}._run_rtcp", named=False, source=(
                r"RtcpSrPacket\(\s*ssrc=self\._ssrc",
                r"(?s)self\.__lsr = .*?self\.__lsr_time = .*?await self\._send_rtcp\(packets\)",
            )),
        ),
        checked={"aiortc": AIORTC_CHECKED},
        why="aiortc's RTCP sender reports map RTP time to when the last packet was sent, so "
        "receivers would sync sound and picture by their different encode and send delays; "
        "reactor's map it by the session clock both are stamped from",
        names=("_reactor_rtp_origin", "_reactor_last_timestamp"),
        apply=_call("clock", "enable_session_clock_reports"),
        revert=_call("clock", "disable_session_clock_reports"),
    ),
    Patch(
        name="end-of-candidates-grace",
        module="reactor.media.ice",
        targets=(
            Target(f"{_CONNECTION}.add_remote_candidate", params=(("self", "remote_candidate"),),
                   replaced=True),
            Target(f"{_CONNECTION}.close", params=(("self",),), replaced=True),
            Target(_CONNECTION, attrs=("_remote_candidates", "_closing",
                                       "_remote_candidates_end")),
        ),
        checked={"aioice": AIOICE_CHECKED},
        why="Firefox's offer carries mDNS-only candidates and a=end-of-candidates; aioice "
        "then pruned every component and the answer had no candidate: the mark is held back "
        "until the peer's checks teach us its address",
        names=("_reactor_eoc_task",),
        apply=_call("ice", "enable_end_of_candidates_grace", True),
        revert=_call("ice", "enable_end_of_candidates_grace", False),
    ),
    Patch(
        name="loopback-only",
        module="reactor.media.ice",
        targets=(
            Target("aioice.ice:get_host_addresses", params=(("use_ipv4", "use_ipv6"),),
                   replaced=True),
            Target(f"{_CONNECTION}.add_remote_candidate", params=(("self", "remote_candidate"),),
                   replaced=True),
            # aioice 0.12 passes the raw datagram too; the wrapper forwards what it gets.
            Target(f"{_CONNECTION}.request_received",
                   params=(("self", "message", "addr", "protocol"),
                           ("self", "message", "addr", "protocol", "raw_data")),
                   replaced=True),
            Target("aioice.ice:StunProtocol.datagram_received",
                   params=(("self", "data", "addr"),), replaced=True),
        ),
        checked={"aioice": AIOICE_CHECKED},
        why="a daemon bound to loopback must keep its media on this machine, yet stock peers "
        "do not pair with a loopback-only answer: it offers this machine's addresses and "
        "answers only them",
        loopback_only=True,
        apply=_call("ice", "restrict_ice_to_loopback", True),
        revert=_call("ice", "restrict_ice_to_loopback", False),
    ),
)

READINGS: tuple[Reading, ...] = (
    Reading(
        name="audio-prefetch",
        module="reactor.media.audio_in",
        targets=(
            Target("aiortc.rtcrtpreceiver:RTCRtpReceiver.__init__",
                   source=(rf"JitterBuffer\(capacity=\d+, prefetch={AIORTC_AUDIO_PREFETCH}\)",)),
        ),
        checked={"aiortc": AIORTC_CHECKED},
        why=f"aiortc releases a received audio frame {AIORTC_AUDIO_PREFETCH} frames after its "
        "packet arrived; ingress dates the clients' sound back by that much to line it up "
        "with the picture",
    ),
    Reading(
        name="ice-port-range",
        module="reactor.media.ports",
        targets=(
            # Each host candidate's socket is a UDP endpoint of the running loop asking for
            # any port: the workers' PortRangeLoop gives it one of server.ice_port_range.
            Target(f"{_CONNECTION}.get_component_candidates", named=False, source=(
                r"loop = asyncio\.get_running_loop\(\)",
                r"await loop\.create_datagram_endpoint\(\s*lambda: StunProtocol\(self\),"
                r"\s*local_addr=\(address, 0\)",
            )),
        ),
        checked={"aioice": AIOICE_CHECKED},
        why="aioice binds each host candidate on a port the kernel picks and has no "
        "setting for a range; server.ice_port_range (a firewall rule, a hostPort) needs "
        "them in one, which the workers' event loop gives",
        upstream="aiortc/aioice#47 (open), aiortc/aioice#63 and #112 (not merged)",
    ),
)

#: Every entry, patches first: what install() checks and the docs list.
ENTRIES: tuple[Reading, ...] = (*PATCHES, *READINGS)
