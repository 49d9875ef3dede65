"""The rendition ladder: a few sizes of the model's picture, each encoded once, and which
one each viewer is sent.

``egress.renditions`` lists them, the full size first: each has a scale of the model's
frame size (rounded down to even pixels) and a share of the top bitrate
(``egress.max_bitrate_kbps``). The default is the full size at the top rate and half the
size at a quarter of it. Each viewer is placed on the biggest rendition its bandwidth
estimate (:mod:`reactor.media.bwe`) affords, and moved by :class:`Placement`:

- A rendition other than the smallest *needs* :data:`FLOOR_SHARE` of its own top rate
  (the full size at 4 Mbit/s needs 2 Mbit/s: a 720p picture squeezed below that looks
  worse than the half size at its best), or less when its encoder has lately produced
  less (an easy picture needs little at any size). The smallest needs nothing: it runs
  down to ``egress.min_bitrate_kbps``.
- **Start** on the full size, its encoder at the viewer's start estimate
  (``egress.start_bitrate_kbps``): an estimate starts low and climbs, so a viewer on a
  good link would otherwise watch a smaller size for the seconds its REMB takes to climb
  (and a client that checks the first frames' size would see the wrong one).
- **Down** at once when the estimate falls below what the viewer's rendition needs *and*
  the link shows it is full (:meth:`~reactor.media.bwe.BandwidthEstimate.congested`: its
  receiver reports lose 2 % or more, or its REMB fell a tenth under its recent high, as a
  delay-based receiver lowers it when its queue grows). It goes to the biggest rendition
  whose need the estimate covers; or when the estimate has stayed under the need for
  :data:`STUCK_S` without climbing a tenth (a link narrower than the need that does not
  show it, and would hold the rendition's other viewers down). An estimate still
  climbing from its start (a browser's REMB starts low) moves nobody down.
- **Up** needs more than the estimate alone can say: a viewer's estimate cannot climb
  far past what it is sent (a receiver's REMB, delay-based, is capped at 1.5 times the
  rate it measures arriving), so a viewer on the half size at 1 Mbit/s reports about
  1.5 Mbit/s whether its link carries 1.5 or 100. So when its estimate stays
  :data:`UP_MARGIN` above what its rendition sends for :data:`UP_HOLD_S`, it *probes*:
  it is switched up, and its estimate then has :data:`PROBE_S` to reach the bigger
  rendition's need. If the estimate falls meanwhile (by :data:`PROBE_FALL`: the link
  queues or loses) or does not get there, it goes back down and waits before the next
  probe, a wait that doubles from :data:`PROBE_BACKOFF_S` to :data:`PROBE_BACKOFF_MAX_S`;
  a probe that succeeds resets it. This is what libwebrtc's probing does with padding,
  done with the picture itself (aiortc sends no padding).

A switch takes effect on a keyframe of the new rendition
(:class:`~reactor.media.tracks.Broadcaster`): until it arrives the viewer keeps the old
rendition's packets, so the picture never breaks. The frame rate is never dropped: the
smallest rendition at ``egress.min_bitrate_kbps`` still moves at the model's rate, which
is what smoothness is judged on (see docs/guide/webrtc.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: A rendition other than the smallest needs this share of its own top rate.
FLOOR_SHARE = 0.45
#: An estimate this far above what a viewer's rendition sends, for UP_HOLD_S, probes up.
UP_MARGIN = 1.2
UP_HOLD_S = 2.0
#: An estimate under its rendition's need that has not climbed a tenth for this long is
#: stuck there: the viewer moves down.
STUCK_S = 3.0
#: How long a probe's estimate has to reach the bigger rendition's need.
PROBE_S = 6.0
#: A probe fails at once when the estimate falls below this share of where it started.
PROBE_FALL = 0.85
PROBE_BACKOFF_S = 8.0
PROBE_BACKOFF_MAX_S = 64.0
#: The fewest pixels a rendition's side may have.
MIN_SIDE = 16


@dataclass(frozen=True)
class Rendition:
    """One rung: ``index`` 0 is the full size; ``top_kbps`` the most its encoder gets."""

    index: int
    width: int
    height: int
    top_kbps: int
    #: What a viewer's estimate must cover to stay on it (the smallest: 0).
    floor_kbps: int

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def even_side(side: int, scale: float) -> int:
    """``side`` scaled, rounded down to an even number of pixels."""
    return math.floor(side * scale / 2) * 2


def build_ladder(width: int, height: int, top_kbps: int,
                 rungs: Sequence[tuple[float, float]]) -> tuple[Rendition, ...]:
    """The renditions of a ``width`` x ``height`` picture for ``(scale, bitrate_share)``
    pairs, biggest first (as ``egress.renditions`` validated them)."""
    out = []
    for i, (scale, share) in enumerate(rungs):
        top = max(1, round(top_kbps * share))
        last = i == len(rungs) - 1
        out.append(Rendition(i, even_side(width, scale), even_side(height, scale), top,
                             0 if last else round(FLOOR_SHARE * top)))
    return tuple(out)


@dataclass(frozen=True)
class Move:
    """A viewer is to be switched from rendition ``src`` to ``dst``; ``why`` is
    ``estimate`` (it fell below ``src``'s need, or covers ``dst``'s), ``probe`` (trying
    ``dst``), ``probe failed`` or ``probe held`` (the probe succeeded: no switch)."""

    src: int
    dst: int
    why: str


class Placement:
    """Which rendition one viewer should be on, from its estimate over time (see the
    module). Call :meth:`update` once a frame; it returns a :class:`Move` when the viewer
    should switch, and the caller switches it (on a keyframe) and calls :meth:`moved`."""

    def __init__(self, ladder: Sequence[Rendition], estimate_bps: float, now: float) -> None:
        self.ladder = tuple(ladder)
        self.current = 0  # the full size first (see the module)
        self._above_since: float | None = None
        self._below: tuple[float, float] | None = None  # since when, from what kbps
        self._probe_start: float | None = None
        self._probe_from_kbps = 0.0
        self._backoff = PROBE_BACKOFF_S
        self._next_probe = now

    @property
    def probing(self) -> bool:
        return self._probe_start is not None

    def need_kbps(self, index: int, easy: dict[int, float]) -> float:
        """What rendition ``index`` needs of a viewer's estimate: its floor, or less when
        its picture is easy (``easy``: the renditions whose encoders lately produced well
        under the rate they were given, with what they produced, kbit/s)."""
        r = self.ladder[index]
        made = easy.get(index)
        return r.floor_kbps if made is None else min(r.floor_kbps, 1.1 * made)

    def _fit(self, kbps: float, easy: dict[int, float]) -> int:
        for r in self.ladder:
            if kbps >= self.need_kbps(r.index, easy):
                return r.index
        return len(self.ladder) - 1

    def update(self, estimate_bps: float, now: float, easy: dict[int, float],
               congested: bool = False) -> Move | None:
        """The move to make now, if any (``easy``: see :meth:`need_kbps`; ``congested``:
        the viewer's link shows it is full)."""
        kbps = estimate_bps / 1000
        cur = self.current
        if self._probe_start is not None:
            if kbps >= self.need_kbps(cur, easy):
                self._probe_start = None
                self._backoff = PROBE_BACKOFF_S
                return None
            if (kbps < PROBE_FALL * self._probe_from_kbps
                    or now - self._probe_start >= PROBE_S):
                return self._fail(now, easy, kbps)
            return None
        if kbps < self.need_kbps(cur, easy) and cur < len(self.ladder) - 1:
            if self._below is None or kbps >= 1.1 * self._below[1]:
                self._below = (now, kbps)  # first under the need, or still climbing
            if congested or now - self._below[0] >= STUCK_S:
                self._above_since = self._below = None
                return self._move(self._fit(kbps, easy), "estimate")
            return None
        self._below = None
        if cur == 0:
            return None
        bigger = cur - 1
        if kbps >= UP_MARGIN * self.need_kbps(bigger, easy):
            self._above_since = None
            return self._move(self._fit(kbps / UP_MARGIN, easy), "estimate")
        # What its rendition sends: its top, or what an easy picture takes.
        sent = easy.get(cur, float(self.ladder[cur].top_kbps))
        if kbps < UP_MARGIN * sent:
            self._above_since = None
            return None
        if self._above_since is None:
            self._above_since = now
        if now - self._above_since < UP_HOLD_S or now < self._next_probe:
            return None
        self._above_since = None
        self._probe_start, self._probe_from_kbps = now, kbps
        return self._move(bigger, "probe")

    def _fail(self, now: float, easy: dict[int, float], kbps: float) -> Move | None:
        self._probe_start = None
        self._next_probe = now + self._backoff
        self._backoff = min(2 * self._backoff, PROBE_BACKOFF_MAX_S)
        # Back to where it came from at least (the estimate fell while probing).
        return self._move(max(self.current + 1, self._fit(kbps, easy)), "probe failed")

    def _move(self, dst: int, why: str) -> Move | None:
        dst = min(max(dst, 0), len(self.ladder) - 1)
        if dst == self.current:
            return None
        move = Move(self.current, dst, why)
        self.current = dst
        return move
