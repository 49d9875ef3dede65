"""What a run asks of its workers beyond the config: ``reactor run``'s files, duration and
timed commands, and the GPU path the supervisor chose.

Plain frozen data, made by the daemon (:mod:`reactor.daemon.headless`, the supervisor) and
read by the workers, so it lives below both; it crosses the spawn boundary pickled, with
each worker's arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only a type here: workers import reactor.media.gpu themselves
    from reactor.media.gpu import GpuPlan

__all__ = ["RunOptions", "TimedCommand"]


@dataclass(frozen=True)
class TimedCommand:
    """One line of ``reactor run --commands``: send ``command`` with ``args`` to the model
    when it has taken frame ``at_frame``."""

    at_frame: int
    command: str
    args: dict[str, Any]  # validated against the model's schema: JSON values


@dataclass(frozen=True)
class RunOptions:
    """The daemon's defaults: no files, not headless, the GPU path decided per worker."""

    input: str | None = None  # --input: the file the source reads (None: no file)
    output: str | None = None  # --output: the MP4 the sink writes (None: frames counted only)
    duration_s: float | None = None  # --duration: seconds of input read, or rendered
    lossless: bool = False  # --lossless: the input ring blocks; no frame is dropped
    headless: bool = False  # reactor run: file source and sink, no clients
    commands: tuple[TimedCommand, ...] = ()  # --commands, in the file's order
    # The supervisor's plan (set with dataclasses.replace before each spawn); None: the CPU
    # path, for a worker started by a test or a tool (reactor.media.gpu.gpu_plan).
    gpu: GpuPlan | None = None
