"""Frame rings between reactor's processes: shared memory on the CPU, CUDA IPC on a GPU.

:class:`ShmRing` moves fixed-size frames through ``/dev/shm``; :class:`CudaRing` keeps them
in device memory (torch is imported only when a CudaRing is used).
"""

from __future__ import annotations

from reactor.ipc.cuda_ring import CudaRing
from reactor.ipc.errors import (
    ProducerGoneError,
    RingClosedError,
    RingError,
    RingSpaceError,
    RingTimeout,
)
from reactor.ipc.layout import RingHandle
from reactor.ipc.reader import Frame, Reader, WriteSlot
from reactor.ipc.ring import ShmRing

__all__ = [
    "CudaRing",
    "Frame",
    "ProducerGoneError",
    "Reader",
    "RingClosedError",
    "RingError",
    "RingHandle",
    "RingSpaceError",
    "RingTimeout",
    "ShmRing",
    "WriteSlot",
]
