#!/usr/bin/env python3
"""The rendition ladder's CPU cost: one 720p encode against the full size plus the half
size (one conversion, one scale, two encodes), per frame, on moving film grain.

``python tools/bench_ladder.py [--seconds S] [--codec h264|vp8]`` prints one JSON object;
:func:`bench_ladder` returns it (for ``tools/bench.py``). Frames are pushed at 30 fps
through a :class:`~reactor.media.tracks.Broadcaster` with one viewer per rendition, so
what is timed is what egress's reader thread does; CPU time is the process's own
(``time.process_time``), which counts x264's slice threads too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import numpy as np

from reactor.media.encoder import Codec
from reactor.media.tracks import Broadcaster

W, H, FPS = 1280, 720, 30


def _frames(n: int) -> list[np.ndarray[Any, np.dtype[np.uint8]]]:
    """Moving gradient plus grain: a picture that wants the full rate (as the Grain model)."""
    rng = np.random.default_rng(1)
    x = np.linspace(0, 255, W, dtype=np.float32)
    out = []
    for i in range(n):
        base = (x[None, :, None] + 4 * i) % 256 + np.zeros((H, 1, 3), np.float32)
        grain = rng.normal(0, 24, (H, W, 3)).astype(np.float32)
        out.append(np.clip(base + grain, 0, 255).astype(np.uint8))
    return out


async def _run(ladder: bool, seconds: float, codec: Codec) -> dict[str, float]:
    frames = _frames(30)
    bc = Broadcaster(W, H, fps=FPS, bitrate_kbps=4000, min_bitrate_kbps=150,
                     start_bitrate_kbps=4000,
                     renditions=((1.0, 1.0), (0.5, 0.25)) if ladder else ((1.0, 1.0),))
    full = bc.add_viewer(codec)
    if ladder:
        half = bc.add_viewer(codec)
        assert half.estimate is not None
        # Its link fills: the REMB falls below the full size's need (a first REMB that
        # low would say only where it starts, reactor.media.ladder).
        half.estimate.on_remb(4_000_000)
        half.estimate.on_remb(800_000)
    n = round(seconds * FPS)
    wall: list[float] = []
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(n):
        start = time.perf_counter()
        bc.push(frames[i % len(frames)], i * 3000)
        wall.append((time.perf_counter() - start) * 1000)
        for track in bc.viewers:  # nobody sends: keep the queues short
            track._queue.clear()
            track._stamps.clear()
        await asyncio.sleep(max(0.0, t0 + (i + 1) / FPS - time.perf_counter()))
    cpu = time.process_time() - cpu0
    encoders = bc.encoders_active
    if encoders != (2 if ladder else 1):
        # The figure would be one encode's, labelled as the ladder's.
        raise RuntimeError(f"{encoders} encoders ran, not {2 if ladder else 1}: the viewers "
                           "were not placed on one rendition each")
    bc.close()
    del full
    wall.sort()
    return {"encoders": encoders, "frames": n, "cpu_ms_per_frame": round(cpu * 1000 / n, 2),
            "core_pct": round(100 * cpu / (n / FPS), 1),
            "wall_p50_ms": round(wall[n // 2], 2), "wall_p99_ms": round(wall[int(n * 0.99)], 2)}


def bench_ladder(seconds: float = 10.0, codec: Codec = "h264") -> dict[str, Any]:
    """One encode, then full plus half, each for ``seconds`` at 30 fps."""
    one = asyncio.run(_run(False, seconds, codec))
    two = asyncio.run(_run(True, seconds, codec))
    return {"codec": codec, "size": f"{W}x{H}", "one_encode": one, "full_plus_half": two,
            "extra_core_pct": round(two["core_pct"] - one["core_pct"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--codec", choices=["h264", "vp8"], default="h264")
    args = ap.parse_args()
    print(json.dumps(bench_ladder(args.seconds, args.codec), indent=1))


if __name__ == "__main__":
    main()
