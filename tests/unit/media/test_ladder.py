"""Which rendition a viewer is placed on, and when it moves (reactor.media.ladder)."""

from __future__ import annotations

from reactor.media.ladder import (
    PROBE_BACKOFF_S,
    PROBE_S,
    STUCK_S,
    UP_HOLD_S,
    Move,
    Placement,
    build_ladder,
)

#: The default ladder of a 720p stream at 4 Mbit/s: 1800 kbps needed to stay on 720p.
LADDER = build_ladder(1280, 720, 4000, [(1.0, 1.0), (0.5, 0.25)])
FRAME = 1 / 30


def run(p: Placement, kbps: float, t0: float, seconds: float,
        easy: dict[int, float] | None = None, sent: float | None = None,
        ) -> list[tuple[float, Move]]:
    """Feed ``kbps`` once a frame from ``t0`` for ``seconds`` (``sent``: the rate the
    viewer's encoder runs at): the moves, with when."""
    moves = []
    for i in range(round(seconds / FRAME)):
        now = t0 + i * FRAME
        # The link is full when the estimate is under 90 % of what the encoder sends.
        move = p.update(kbps * 1000, now, easy or {}, sent is not None and kbps < 0.9 * sent)
        if move is not None:
            moves.append((now, move))
    return moves


def test_sizes_round_down_to_even_and_the_smallest_needs_nothing() -> None:
    full, half = LADDER
    assert (full.size, full.top_kbps, full.floor_kbps) == ("1280x720", 4000, 1800)
    assert (half.size, half.top_kbps, half.floor_kbps) == ("640x360", 1000, 0)
    odd = build_ladder(1278, 718, 4000, [(1.0, 1.0), (0.5, 0.25)])
    assert odd[1].size == "638x358"  # 639x359 rounded down to even


def test_a_viewer_starts_on_the_full_size_whatever_its_start_estimate() -> None:
    """An estimate starts low and climbs: a viewer on a good link would watch the half
    size while it did."""
    assert Placement(LADDER, 1_000_000, 0.0).current == 0
    assert Placement(LADDER, 200_000, 0.0).current == 0


def on_half(p: Placement) -> Placement:
    """``p`` moved to the half size, as a full link's estimate moves it."""
    assert run(p, 500, -100.0, 0.1, sent=1000) == [(-100.0, Move(0, 1, "estimate"))]
    return p


def test_an_estimate_below_the_need_switches_down_at_once_when_the_link_is_full() -> None:
    p = Placement(LADDER, 3_000_000, 0.0)
    # The encoder runs at 2000 kbps and the estimate says 1500: the link takes less.
    assert run(p, 1500, 0.0, 0.1, sent=2000) == [(0.0, Move(0, 1, "estimate"))]


def test_a_climbing_estimate_below_the_need_moves_nobody_down() -> None:
    """A viewer started on the full size at 1000 kbps: its estimate climbs 8 % a second,
    however far below the full size's need (1800) it still is."""
    p = Placement(LADDER, 1_000_000, 0.0)
    kbps, moves = 1000.0, []
    for i in range(int(7 / FRAME)):
        kbps *= 1.08 ** FRAME
        moves += run(p, kbps, i * FRAME, FRAME)
    assert moves == [] and p.current == 0


def test_an_estimate_stuck_under_the_need_moves_down_after_a_while() -> None:
    """A link narrower than the need that does not show it (no loss, a steady REMB)."""
    p = Placement(LADDER, 1_000_000, 0.0)
    moves = run(p, 1300, 0.0, STUCK_S + 0.5)
    assert [m for _, m in moves] == [Move(0, 1, "estimate")]
    assert moves[0][0] >= STUCK_S - FRAME


def test_an_estimate_that_covers_the_bigger_rendition_with_margin_switches_up() -> None:
    p = on_half(Placement(LADDER, 500_000, 0.0))
    assert run(p, 1900, 0.0, 1.0) == []  # above the need, not by the margin: no flapping
    assert run(p, 2200, 1.0, 0.1) == [(1.0, Move(1, 0, "estimate"))]


def test_headroom_over_what_is_sent_probes_up_after_it_held() -> None:
    """On the half size at its top (1000 kbps), an estimate of 1300 kbps cannot say
    whether 720p fits: after UP_HOLD_S it is tried, and given PROBE_S to reach 1800."""
    p = on_half(Placement(LADDER, 500_000, 0.0))
    moves = run(p, 1300, 0.0, UP_HOLD_S + 1)
    assert [m for _, m in moves] == [Move(1, 0, "probe")]
    assert moves[0][0] >= UP_HOLD_S


def test_a_probe_that_does_not_reach_the_need_goes_back_and_backs_off() -> None:
    p = on_half(Placement(LADDER, 500_000, 0.0))
    moves = run(p, 1300, 0.0, 60)
    probes = [t for t, m in moves if m.why == "probe"]
    failed = [t for t, m in moves if m.why == "probe failed"]
    assert [m.dst for _, m in moves[:2]] == [0, 1]
    assert failed[0] - probes[0] >= PROBE_S - FRAME
    # Each next probe waits twice as long as the one before (8 s, 16 s, ...).
    waits = [b - a for a, b in zip(failed, probes[1:], strict=False)]
    assert waits[0] >= PROBE_BACKOFF_S - FRAME
    assert waits[1] >= 2 * PROBE_BACKOFF_S - FRAME
    assert len(probes) == 3


def test_a_probe_fails_at_once_when_the_estimate_falls() -> None:
    p = on_half(Placement(LADDER, 500_000, 0.0))
    run(p, 1300, 0.0, UP_HOLD_S + 0.1)
    assert p.probing
    assert run(p, 1000, 10.0, 0.1) == [(10.0, Move(0, 1, "probe failed"))]


def test_a_probe_that_reaches_the_need_stays() -> None:
    p = on_half(Placement(LADDER, 500_000, 0.0))
    run(p, 1300, 0.0, UP_HOLD_S + 0.1)
    assert run(p, 1600, 3.0, 2.0) == []
    assert run(p, 1850, 5.0, 20.0) == []  # the need met: no longer a probe
    assert not p.probing and p.current == 0


def test_an_easy_picture_needs_only_what_its_encoder_produces() -> None:
    """The test pattern at 720p takes 700 kbps: 720p needs 770 kbps, not 1800."""
    p = on_half(Placement(LADDER, 500_000, 0.0))
    assert run(p, 1000, 0.0, 0.1, easy={0: 700.0, 1: 250.0}) == [
        (0.0, Move(1, 0, "estimate"))]
    assert run(p, 1000, 1.0, 5.0, easy={0: 700.0, 1: 250.0}) == []
