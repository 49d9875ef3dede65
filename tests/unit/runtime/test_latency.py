"""Stage latency percentiles are over the last 10 s, not the last N frames."""

from __future__ import annotations

from reactor.runtime.latency import WINDOW_S, LatencyWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def feed(window: LatencyWindow, clock: Clock, ms: float, fps: float, seconds: float) -> None:
    for _ in range(round(fps * seconds)):
        window.add(ms)
        clock.now += 1 / fps


def test_a_slowdown_shows_in_the_p50_once_it_fills_the_window() -> None:
    clock = Clock()
    window = LatencyWindow("model", clock=clock)
    feed(window, clock, 7.0, 30, 20)  # a fast model, long enough to fill any frame count
    feed(window, clock, 150.0, 6.7, WINDOW_S + 1)  # then slow: 6.7 fps, 150 ms a frame
    stat = window.stat()
    assert stat is not None and stat.p50_ms == 150.0 and stat.p99_ms == 150.0
    # The old 512-frame window kept 7 ms: 600 fast samples outnumbered 74 slow ones.
    assert stat.count == 600 + round(6.7 * (WINDOW_S + 1))


def test_an_idle_stage_has_no_percentiles_but_keeps_its_histogram() -> None:
    clock = Clock()
    window = LatencyWindow("encode", clock=clock)
    assert window.stat() is None  # nothing measured yet
    feed(window, clock, 5.0, 30, 2)
    busy = window.stat()
    assert busy is not None and busy.window_count == 60 and busy.p50_ms == 5.0
    clock.now += WINDOW_S + 0.1  # nobody connected: no frame for longer than the window
    idle = window.stat()
    assert idle is not None and idle.window_count == 0
    assert not idle.p50_ms and not idle.p99_ms
    assert idle.count == 60 and idle.buckets == busy.buckets  # /metrics still adds them up
