"""The byte layout of a ring's shared-memory segment (documented in :mod:`reactor.ipc.ring`).

Word indices into the global header (``G_*``), a consumer row (``C_*``) and a slot row
(``S_*``), the handle that names a segment, and the offsets of its regions.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Literal

Policy = Literal["latest", "block"]

MAGIC = 0x474E5254_43414552  # b"REACTRNG" little-endian
VERSION = 1
SHM_DIR = "/dev/shm"
PAGE = mmap.PAGESIZE
GLOBAL_BYTES = 512
ROW = 8  # words per consumer / slot row
(G_MAGIC, G_VERSION, G_SLOTS, G_STRIDE, G_MAXC, G_POLICY, G_NDIM) = range(7)
G_SHAPE, G_DTYPE, G_DATA, G_AUX = 7, 15, 16, 17
G_PPID, G_PSTART, G_PSTATE, G_CLOSED, G_LATEST = 18, 19, 20, 21, 22
G_WFUTEX, G_RFUTEX, G_PPARKED, G_RETIRED, G_PGEN, G_PENDING = 23, 24, 25, 26, 27, 28
C_PID, C_START, C_PIN, C_POS, C_NEED, C_DROPPED, C_PARKED, C_TOKEN = range(8)
S_STATE, S_FRAME, S_CAPTURE, S_ENQUEUE, S_SESSION = range(5)
P_NONE, P_ACTIVE, P_CLOSED = 0, 1, 2
POLICIES: dict[str, int] = {"latest": 0, "block": 1}
MAX_NDIM = 8

# Waiting (see "Heads-up wake" in reactor.ipc.ring): read at call time, so tests may patch.
SPIN_S = 20e-6
PENDING_SPIN_S = 0.002
PARK_SLICE_S = 0.1


@dataclass(frozen=True)
class RingHandle:
    """Everything needed to re-open a ring in another process; small and picklable."""

    name: str
    slots: int
    shape: tuple[int, ...]
    dtype: str
    policy: str
    max_consumers: int
    slot_bytes: int
    total_bytes: int
    aux_bytes: int = 0


def layout(slots: int, max_consumers: int, aux_bytes: int) -> tuple[int, int, int, int]:
    """Offsets of the consumer table, slot table, aux blobs and slot data."""
    cons = GLOBAL_BYTES
    slot_tab = cons + max_consumers * ROW * 8
    aux = slot_tab + slots * ROW * 8
    data = aux + (1 + max_consumers) * aux_bytes
    return cons, slot_tab, aux, -(-data // PAGE) * PAGE
