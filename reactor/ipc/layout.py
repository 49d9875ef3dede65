"""The byte layout of a ring's shared-memory segment, and the handle that names one.

Word indices into the global header (``G_*``), a consumer row (``C_*``) and a slot row
(``S_*``), the :class:`RingHandle`, the :data:`Policy` and :class:`RingStats` of a ring,
:func:`layout` (the offsets of the regions), and the
header's encoding (:func:`write_header`, :func:`read_header`).
:mod:`reactor.ipc.segment` maps the segment; :mod:`reactor.ipc.ring` explains the protocol.

Byte layout (all words little-endian signed 64-bit, offsets in bytes)::

    0     global header, 64 words:
            0 magic  1 version  2 slots  3 slot stride  4 max consumers  5 policy
            6 ndim  7..14 shape  15 dtype.str (8 ASCII bytes)  16 data offset
            17 aux bytes  18 producer pid  19 producer start ticks
            20 producer state (0 none, 1 active, 2 closed)  21 closed by creator
            22 LATEST = seq << 16 | slot of the newest published frame (0: none yet)
            23 write futex (u32, bumped by the producer after every publish)
            24 release futex (u32, set by consumers on release; wakes a block producer)
            25 producer parked  26 dropped by departed consumers  27 producer generation
            28 PENDING = seq being written (0: none), the readers' heads-up
    512   consumer table, max_consumers x 8 words:
            pid (0 = free), start ticks, pin (slot held, -1 none), pos (last seq taken),
            need (block: lowest seq still needed), dropped, parked, token
    ...   slot table, slots x 8 words:
            state (2*seq published, odd being written, 0 empty), frame id, capture ts,
            enqueue ts (CLOCK_MONOTONIC ns), session id, 3 spare
    ...   aux blobs (CudaRing only): (1 + max_consumers) x aux bytes, each a seqlock
          version word, a length word and the payload
    page  slot data (first page boundary after the aux blobs), ``slots`` x stride, the
          stride being the frame's bytes rounded up to a page
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Any, Literal

#: What a full ring does: ``latest`` overwrites the oldest frame no reader holds (the
#: reader skips ahead, the drop is counted), ``block`` makes the producer wait.
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
S_STATE, S_FRAME, S_CAPTURE, S_ENQUEUE, S_SESSION, S_PTS, S_LENGTH = range(7)
P_NONE, P_ACTIVE, P_CLOSED = 0, 1, 2
POLICIES: dict[Policy, int] = {"latest": 0, "block": 1}
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
    policy: Policy
    max_consumers: int
    slot_bytes: int
    total_bytes: int
    aux_bytes: int = 0


@dataclass(frozen=True)
class RingStats:
    """A ring's occupancy at one moment, read from its header without taking a frame."""

    name: str
    slots: int
    used: int  # slots a reader still needs
    dropped: int  # frames readers missed, departed readers' included
    policy: Policy
    written: int  # frames published since the ring was made
    consumers: int  # readers attached now


def layout(slots: int, max_consumers: int, aux_bytes: int) -> tuple[int, int, int, int]:
    """Offsets of the consumer table, slot table, aux blobs and slot data."""
    cons = GLOBAL_BYTES
    slot_tab = cons + max_consumers * ROW * 8
    aux = slot_tab + slots * ROW * 8
    data = aux + (1 + max_consumers) * aux_bytes
    return cons, slot_tab, aux, -(-data // PAGE) * PAGE


def write_header(g: Any, handle: RingHandle, data_off: int) -> None:
    """Fill a new segment's global header ``g`` (int64 words) from its handle, all but the
    magic word, which the creator stores last."""
    shape = handle.shape
    g[G_VERSION], g[G_SLOTS], g[G_STRIDE] = VERSION, handle.slots, handle.slot_bytes
    g[G_MAXC], g[G_POLICY] = handle.max_consumers, POLICIES[handle.policy]
    g[G_NDIM], g[G_DATA], g[G_AUX] = len(shape), data_off, handle.aux_bytes
    g[G_SHAPE : G_SHAPE + len(shape)] = shape
    g[G_DTYPE] = int.from_bytes(handle.dtype.encode().ljust(8, b"\0"), "little")


def read_header(g: Any, name: str, total_bytes: int) -> RingHandle:
    """The handle that the global header ``g`` (int64 words) of ring ``name`` describes."""
    shape = tuple(int(x) for x in g[G_SHAPE : G_SHAPE + int(g[G_NDIM])])
    policy = next(k for k, v in POLICIES.items() if v == int(g[G_POLICY]))
    return RingHandle(
        name=name,
        slots=int(g[G_SLOTS]),
        shape=shape,
        dtype=g[G_DTYPE : G_DTYPE + 1].tobytes().rstrip(b"\0").decode(),
        policy=policy,
        max_consumers=int(g[G_MAXC]),
        slot_bytes=int(g[G_STRIDE]),
        total_bytes=total_bytes,
        aux_bytes=int(g[G_AUX]),
    )
