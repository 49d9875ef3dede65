"""The pipeline's two rings, created and removed by the supervisor alone.

``input`` (front -> model) uses the plan's policy (``latest``, or ``block`` for a lossless
file run); ``output`` (model -> back) always blocks, which paces the model to playback.
The segments are named after the supervisor's pid, so a crashed daemon's leftovers are
found and replaced by the next one with the same pid.
"""

from __future__ import annotations

import contextlib
import logging
import os

from reactor.config import Config
from reactor.daemon.plan import Policy
from reactor.ipc import ShmRing

log = logging.getLogger(__name__)


def create_rings(config: Config, input_policy: Policy) -> dict[str, ShmRing]:
    shape, tag = config.frame_shape(), f"reactor-{os.getpid()}"
    specs: dict[str, tuple[int, Policy]] = {
        "input": (config.rings.input_slots, input_policy),
        "output": (config.rings.output_slots, "block"),
    }
    rings: dict[str, ShmRing] = {}
    try:
        for ring_name, (slots, policy) in specs.items():
            name = f"{tag}-{ring_name}"
            ShmRing.unlink_name(name)  # a crashed daemon with our pid may have left it
            rings[ring_name] = ShmRing.create(name, slots=slots, shape=shape, dtype="uint8",
                                              policy=policy)
    except BaseException:
        remove_rings(rings)
        raise
    log.info("rings: %s", ", ".join(f"{k}={r.name}" for k, r in rings.items()))
    return rings


def remove_rings(rings: dict[str, ShmRing]) -> None:
    for ring in rings.values():
        with contextlib.suppress(Exception):
            ring.close()
            ring.unlink()
