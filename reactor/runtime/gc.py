"""The garbage collector's tuning in the daemon's processes: thresholds, and freezing what
start-up made."""

from __future__ import annotations

import gc

#: The collector's thresholds in the daemon's processes (CPython's default: 700, 10, 10).
#: Streaming allocates and frees at a steady rate, so in steady state the collector does
#: not run at all (egress with 32 viewers: no collection in 20 s); what triggers it is
#: churn, viewers joining and leaving, whose peer connections die in reference cycles.
#: Measured in egress (32 viewers, 20 joins and leaves, CPU time in the collector): the
#: default thresholds ran 45 collections for 110 ms, one of them a full one of 44 ms;
#: these ran 3 for 21 ms, the longest 10 ms (most of it freeing the dead connections).
GC_THRESHOLDS = (10_000, 20, 20)


def tune_gc() -> None:
    """Set :data:`GC_THRESHOLDS` (at process start)."""
    gc.set_threshold(*GC_THRESHOLDS)


def freeze_gc() -> None:
    """Call once start-up is over (imports, the model's weights, the codecs): collect what
    start-up left, then move every object alive now into the permanent generation.

    A full (oldest-generation) collection walks every object the collector tracks; in a
    worker that is a hundred thousand or more from imports alone (aiortc, PyAV, numpy,
    torch), which made one full collection take 35-60 ms, two frame intervals of a
    30 fps stream. Frozen objects are never walked again, so a later full collection
    only walks what the process made since it became ready."""
    gc.collect()
    gc.freeze()
