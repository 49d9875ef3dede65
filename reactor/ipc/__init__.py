"""Frame rings between reactor's processes: shared memory on the CPU, CUDA IPC on a GPU.

:class:`ShmRing` moves fixed-size frames through ``/dev/shm``; :class:`CudaRing` keeps them
in device memory (torch is imported only when a CudaRing is used).

The modules, each importing only those above it::

    errors     the RingError tree
    layout     the segment's byte layout and the RingHandle
    sync       fence, futexes, process liveness
    segment    Segment: the mapping, word access, the lock, the consumer table, aux blobs
    reader     Reader and Frame: the consumer side
    ring       ShmRing and WriteSlot: the producer side, and the protocol between the two
    cuda_ring  CudaRing: a ShmRing of 1-byte slots plus device memory shared by CUDA IPC
"""

from __future__ import annotations

from reactor.ipc.cuda_ring import CudaRing, RingHandles
from reactor.ipc.errors import (
    ProducerGoneError,
    RingClosedError,
    RingError,
    RingSpaceError,
    RingTimeout,
)
from reactor.ipc.layout import Policy, RingHandle, RingStats
from reactor.ipc.reader import Frame, Reader
from reactor.ipc.ring import ShmRing, WriteSlot
from reactor.ipc.segment import Segment

__all__ = [
    "CudaRing",
    "Frame",
    "Policy",
    "ProducerGoneError",
    "Reader",
    "RingClosedError",
    "RingError",
    "RingHandle",
    "RingHandles",
    "RingSpaceError",
    "RingStats",
    "RingTimeout",
    "Segment",
    "ShmRing",
    "WriteSlot",
]
