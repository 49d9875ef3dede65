"""Models for the network tests (imported by the workers): a picture that is hard to
compress, and a pass-through that logs when each input frame reached it."""

from __future__ import annotations

import time
from pathlib import Path
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


class Received(VideoModel):
    """Passes its input through, and writes one line per input frame it receives to
    ``args.log``: ``time.monotonic()`` when :meth:`Session.inputs` handed it over (the same
    clock in every process on the machine, namespaces included). What a WHIP sender got
    through to the model, measured at the model."""

    def load(self, config: dict[str, Any]) -> None:
        self.log = Path(config["log"])

    def start_session(self, session: Session) -> None:
        with self.log.open("a", buffering=1) as log:
            for frame in session.inputs():
                log.write(f"{time.monotonic():.6f}\n")
                session.emit(frame)
