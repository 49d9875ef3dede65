"""A WHIP sender starts at a camera's bitrate, not a quarter of its picture size.

aiortc has no transport-wide congestion control: what a browser sending to us learns of
the path is our REMB (receiver estimated maximum bitrate), from aiortc's
:class:`aiortc.rate.RemoteBitrateEstimator`. Two things kept a browser's camera small,
measured here with Chromium (Firefox behaved alike):

- libwebrtc encodes its first frames at its start estimate, 300 kbit/s, before any REMB
  can arrive; at that rate it drops its first frames and sends 640x360, and its quality
  scaler climbs back to 1280x720 over tens of seconds. :func:`with_start_bitrate` puts
  ``x-google-start-bitrate`` in our answer, which libwebrtc reads from the codec it sends
  with: Chromium then sends 1280x720 from the first second.
- aiortc's estimator says nothing for 3 s, then starts from the throughput it measured
  during them and grows 8 % a second: Chromium, told 690 kbit/s at 3 s, was back at
  1 Mbit/s only after 14 s. :func:`enable_fast_start` seeds each estimator with
  :data:`START_BITRATE_BPS` and lets it speak from the first packet.

Nothing else changes: the estimator's over-use detector still lowers the estimate (to
85 % of the measured throughput) as soon as the path queues, and a sender that sees loss
backs off on its own, so a slow link costs a second or two at a high rate, as one of
libwebrtc's own start-up probes would.
"""

from __future__ import annotations

import functools
from typing import Any

from aiortc import rate

from reactor.media.sdp import rtpmap, split_sections

#: The estimate a receiver starts from: what Chromium itself allows a 720p camera.
START_BITRATE_BPS = 2_500_000

#: The attribute of the patched ``__init__`` that keeps aiortc's own.
ORIGINAL_INIT = "__reactor_fast_start__"


def enable_fast_start(start_bps: int = START_BITRATE_BPS) -> None:
    """Seed every :class:`~aiortc.rate.RemoteBitrateEstimator` made from now on with
    ``start_bps`` (idempotent; a second call changes the start rate)."""
    cls = rate.RemoteBitrateEstimator
    original = getattr(cls.__init__, ORIGINAL_INIT, cls.__init__)

    @functools.wraps(original)
    def __init__(self: Any) -> None:
        original(self)
        # set_estimate() marks the rate control initialised, so update() answers from the
        # first packet instead of after 3 s of measuring the browser's start rate.
        self.rate_control.set_estimate(start_bps, 0)

    setattr(__init__, ORIGINAL_INIT, original)
    cls.__init__ = __init__  # type: ignore[method-assign]


def disable_fast_start() -> None:
    """Undo :func:`enable_fast_start`: estimators made from now on start as aiortc's do."""
    cls = rate.RemoteBitrateEstimator
    original = getattr(cls.__init__, ORIGINAL_INIT, None)
    if original is not None:
        cls.__init__ = original  # type: ignore[method-assign]


def fast_start_enabled() -> bool:
    """Whether :func:`enable_fast_start` is in effect."""
    return hasattr(rate.RemoteBitrateEstimator.__init__, ORIGINAL_INIT)


def with_start_bitrate(sdp: str, start_bps: int = START_BITRATE_BPS) -> str:
    """``sdp`` (our answer to a sender) with ``x-google-start-bitrate`` on each video codec.

    A libwebrtc sender encodes its first frames at its start estimate (300 kbit/s), before
    any REMB can reach it. So low a start makes Chromium drop its first frames and send
    640x360, and its quality scaler then climbs back to 1280x720 over tens of seconds.
    libwebrtc reads this parameter from the negotiated send codec, that is from our answer;
    with it Chromium sends 1280x720 from the first second.
    """
    param = f"x-google-start-bitrate={start_bps // 1000}"
    head, sections = split_sections(sdp.split("\r\n"))
    out = list(head)
    for kind, body in sections:
        out += _with_param(body, param) if kind == "video" else body
    return "\r\n".join(out)


#: Codecs that carry pictures (not rtx, red or ulpfec, which have no bitrate of their own).
_MEDIA_CODECS = ("vp8", "vp9", "h264", "h265", "av1")


def _with_param(body: list[str], param: str) -> list[str]:
    """A video section's lines with ``param`` on each picture codec's ``a=fmtp`` line
    (a new one after its ``a=rtpmap`` where it has none)."""
    codecs = {pt for pt, name in filter(None, map(rtpmap, body))
              if name.lower() in _MEDIA_CODECS}
    has_fmtp = {line[len("a=fmtp:"):].partition(" ")[0] for line in body
                if line.startswith("a=fmtp:")}
    out: list[str] = []
    for line in body:
        if line.startswith("a=fmtp:") and line[len("a=fmtp:"):].partition(" ")[0] in codecs:
            line = f"{line};{param}"
        out.append(line)
        mapped = rtpmap(line)
        if mapped is not None and mapped[0] in codecs and mapped[0] not in has_fmtp:
            out.append(f"a=fmtp:{mapped[0]} {param}")
    return out
