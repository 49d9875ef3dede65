"""Recorder: frames written are the frames in the file, at the configured rate."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from reactor.media.recorder import Recorder


def test_long_recording_keeps_every_frame_and_its_timestamp(tmp_path: Path) -> None:
    # Past 256 frames: timestamps read in the muxer's time base (1/15360) used to collapse
    # and the muxer rejected frame 257.
    path = tmp_path / "out.mp4"
    rec = Recorder(path, 64, 48, 30)
    for i in range(300):
        rec.write(np.full((48, 64, 3), i % 256, np.uint8))
    rec.close()
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        pts = [f.time for f in c.decode(stream)]
    assert len(pts) == 300
    assert abs(pts[-1] - 299 / 30) < 0.01
