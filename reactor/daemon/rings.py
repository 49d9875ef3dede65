"""The pipeline's rings, created and removed by the supervisor alone.

``input`` (front -> model) uses the plan's policy (``latest``, or ``block`` for a lossless
file run); ``output`` (model -> back) always blocks, which paces the model to playback.
With ``audio.input`` on, ``audio_in`` carries the clients' sound to the model in 20 ms
chunks, in order (``block``: ingress never waits, it drops a chunk the full ring has no
room for, and counts it; the model skips chunks older than
``reactor.workers.ring_io.AUDIO_STALE_S``, so one that falls behind hears the newest;
a lossless file run's source waits for room instead). With ``audio.output`` on,
``audio_out`` carries the model's sound to the back (``block``, never lossy), each slot up
to 100 ms of it with its length and presentation time (`reactor.ipc.Frame.length`,
``pts``). Both hold float32 ``(samples, audio.channels)`` at ``audio.sample_rate``.
With the GPU path (:class:`reactor.media.gpu.GpuPlan`, ``ring == "cuda"``) ``output`` is a
:class:`~reactor.ipc.CudaRing` on the plan's device: its meta ring is shared memory made
here, without touching CUDA; the frames live in device memory the model's process
allocates on its first write.
The segments are named after the supervisor's pid, so a crashed daemon's leftovers are
found and replaced by the next one with the same pid.
"""

from __future__ import annotations

import logging
import os

from reactor.config import Config
from reactor.ipc import CudaRing, Policy, ShmRing
from reactor.media.gpu import GpuPlan

#: A ring the supervisor made: shared memory, or (``output`` on a GPU) a CudaRing.
Ring = ShmRing | CudaRing

log = logging.getLogger(__name__)

#: Samples per ``audio_in`` slot and most samples per ``audio_out`` slot, in seconds.
AUDIO_IN_S, AUDIO_OUT_S = 0.02, 0.1
#: Slots: 640 ms of the clients' sound; 3.2 s of the model's.
AUDIO_IN_SLOTS, AUDIO_OUT_SLOTS = 32, 32


def audio_shape(config: Config, seconds: float) -> tuple[int, int]:
    """The shape of an audio slot holding ``seconds`` of sound in the config's format."""
    return (round(config.audio.sample_rate * seconds), config.audio.channels)


def create_rings(config: Config, input_policy: Policy,
                 gpu: GpuPlan | None = None) -> dict[str, Ring]:
    shape, tag = config.frame_shape(), f"reactor-{os.getpid()}"
    specs: dict[str, tuple[int, Policy]] = {
        "input": (config.rings.input_slots, input_policy),
        "output": (config.rings.output_slots, "block"),
    }
    shapes: dict[str, tuple[tuple[int, ...], str]] = {
        "input": (shape, "uint8"), "output": (shape, "uint8")}
    if config.audio.input:
        specs["audio_in"] = (AUDIO_IN_SLOTS, "block")
        shapes["audio_in"] = (audio_shape(config, AUDIO_IN_S), "float32")
    if config.audio.output:
        specs["audio_out"] = (AUDIO_OUT_SLOTS, "block")
        shapes["audio_out"] = (audio_shape(config, AUDIO_OUT_S), "float32")
    rings: dict[str, Ring] = {}
    try:
        for ring_name, (slots, policy) in specs.items():
            name = f"{tag}-{ring_name}"
            ShmRing.unlink_name(name)  # a crashed daemon with our pid may have left it
            ring_shape, dtype = shapes[ring_name]
            if ring_name == "output" and gpu is not None and gpu.on_gpu:
                rings[ring_name] = CudaRing.create(name, slots=slots, shape=ring_shape,
                                                   dtype=dtype, policy=policy, device=gpu.index)
                continue
            rings[ring_name] = ShmRing.create(name, slots=slots, shape=ring_shape, dtype=dtype,
                                              policy=policy)
    except BaseException:
        remove_rings(rings)
        raise
    log.info("rings: %s", ", ".join(f"{k}={r.name}" for k, r in rings.items()))
    return rings


def remove_rings(rings: dict[str, Ring]) -> None:
    """Close and unlink every ring; a failure is logged and the rest still go.

    Unlink is tried even when close failed: a segment left in /dev/shm outlives the daemon
    (its memory with it) until the next start with the same pid, or a reboot."""
    for key, ring in rings.items():
        try:
            ring.close()
        except Exception:  # shutting down: log it and still remove the name
            log.exception("ring %s: closing segment %s failed", key, ring.name)
        try:
            ring.unlink()
        except Exception:
            log.exception("ring %s: unlinking segment %s failed; remove /dev/shm/%s by hand "
                          "if it is still there", key, ring.name, ring.name)
