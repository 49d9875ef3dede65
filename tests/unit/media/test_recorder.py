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


def test_recording_describes_its_colour_and_keeps_it(tmp_path: Path) -> None:
    from reactor.media.convert import frame_to_rgb

    path = tmp_path / "colour.mp4"
    rec = Recorder(path, 1280, 720, 30)
    for _ in range(5):
        rec.write(np.full((720, 1280, 3), (20, 40, 230), np.uint8))
    rec.close()
    with av.open(str(path)) as c:
        ctx = c.streams.video[0].codec_context
        # As the live H.264 stream: BT.601 matrix, BT.709 (sRGB) primaries and transfer,
        # limited range, read back from the file's own stream header.
        assert (ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range) == \
            (6, 1, 1, 1)
        frame = next(c.decode(video=0))
    centre = frame_to_rgb(frame, 1280, 720)[360, 640].astype(int)
    assert np.abs(centre - np.array((20, 40, 230))).max() <= 4, centre
