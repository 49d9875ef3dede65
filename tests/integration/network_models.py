"""A picture that is hard to compress, for the network tests (imported by the workers)."""

from __future__ import annotations

from typing import Any

import numpy as np

from reactor import Session, VideoModel


class Grain(VideoModel):
    """Film grain over a moving colour gradient, at ``video.fps``: at 1280x720 x264 wants
    about 4 Mbit/s for it, and every frame differs everywhere (no static background)."""

    def load(self, config: dict[str, Any]) -> None:
        self.amplitude = int(config.get("amplitude", 24))

    def start_session(self, session: Session) -> None:
        h, w = session.height, session.width
        rng = np.random.default_rng(26)
        x = np.linspace(0, 255, w, dtype=np.float32)
        y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
        gradient = np.stack([np.broadcast_to(x, (h, w)), np.broadcast_to(y, (h, w)),
                             np.broadcast_to((x + y) / 2, (h, w))], axis=-1)
        base = (gradient * 0.7 + 40).astype(np.int16)
        # A few grain fields, shifted each frame: drawing fresh noise would cost the
        # model more CPU than the encoder on a 2-core machine.
        grains = [rng.integers(-self.amplitude, self.amplitude + 1, (h, w, 3), np.int16)
                  for _ in range(4)]
        n = 0
        while not session.should_stop():
            frame = np.roll(base, 8 * n, axis=1) + np.roll(grains[n % 4], 37 * n, axis=0)
            session.emit(frame.clip(0, 255).astype(np.uint8))
            n += 1
