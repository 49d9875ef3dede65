"""video.fps limits what a video-to-video model is given: a faster sender's extra frames
are not taken, a slower one loses none."""

from __future__ import annotations

import pytest

from reactor.workers.ingress import FramePace


@pytest.mark.parametrize(("sent", "fps", "taken"), [
    (30.0, 15, 15.0), (30.0, 30, 30.0), (10.0, 15, 10.0), (60.0, 24, 24.0), (30.0, 20, 20.0)])
def test_a_sender_is_taken_at_most_video_fps(sent: float, fps: int, taken: float) -> None:
    pace = FramePace(fps)
    # Arrivals jitter by up to 4 ms, as a real link's do.
    times = [n / sent + (0.004 if n % 3 == 1 else 0.0) for n in range(int(20 * sent))]
    got = sum(pace.take(t) for t in times) / 20
    assert got == pytest.approx(taken, abs=0.15)


def test_after_a_pause_the_next_frame_is_taken_at_once() -> None:
    pace = FramePace(15)
    assert pace.take(0.0) and not pace.take(0.03) and pace.take(0.067)
    assert pace.take(5.0)  # the sender paused: no burst owed, no frame refused
    assert not pace.take(5.03)
