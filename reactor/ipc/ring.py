"""ShmRing: fixed-size frame slots in one POSIX shared-memory segment -- the producer side.

One producer, up to ``max_consumers`` readers (:class:`~reactor.ipc.reader.Reader`), each with
its own read position. The segment itself -- its mapping, lock, consumer table, liveness and
who unlinks it -- is :class:`~reactor.ipc.segment.Segment`; its byte layout is documented in
:mod:`reactor.ipc.layout`. This docstring is the protocol that the producer here and the
readers in :mod:`reactor.ipc.reader` follow.

Memory ordering. x86-64 is TSO: stores become visible in program order and loads are not
reordered with other loads, so the seqlock-style hand-off needs no barrier -- the producer
writes a slot's data and metadata and then stores its even ``state`` and ``LATEST``; a
reader loads ``LATEST``/``state`` and only then the data. (Large copies may use
non-temporal stores, which TSO does not order, so the producer fences before publishing.)
The only store->load orderings, which TSO does *not* give, are the Dekker handshakes below,
and each has an explicit :func:`~reactor.ipc.sync.fence` between its store and its load:

* ``latest`` policy, torn-read freedom by ownership: a reader *pins* the slot it reads
  (store ``pin``, fence, re-load ``state``); the producer marks a slot odd before writing
  (store ``state``, fence, load every ``pin``) and backs off a pinned slot. Either the
  reader sees the odd state and gives the frame up, or the producer sees the pin and writes
  elsewhere. A pinned slot is never rewritten, so the zero-copy view stays valid until the
  reader releases it. The producer never waits: with K readers pinning one slot each, one of
  ``slots >= K + 1`` is always free.
* ``block`` policy: seq ``s`` lives in slot ``s % slots``; the producer writes seq ``t`` only
  when every registered reader's ``need > t - slots``. Readers only advance ``need``.
* parking: a waiter loads the futex word, stores its ``parked`` flag, fences, re-checks its
  condition and calls ``futex_wait(word, seen)``; the waker changes the word, fences and
  wakes when it sees a ``parked`` flag. The kernel compares the word atomically with going
  to sleep, so a wake-up between the re-check and the sleep is never lost.

  Several readers may set the release futex at once, and there are no atomic increments:
  each writes a value no other reader writes (its own counter << 6 | its index), so the
  word always differs from what a parked producer saw.

Waiting is a short spin (``SPIN_S``, in :mod:`reactor.ipc.layout`) and then a futex park in
slices of ``PARK_SLICE_S``, between which a reader checks that the producer is alive and a
block producer reaps readers that died. An idle ring therefore costs ~10 wake-ups a second
and no measurable CPU (0.2-0.3 % of a core measured). The futex was chosen over a named
FIFO or an eventfd: equal wake-up latency here (futex p50 8 us, FIFO 5-7 us, both 50-75 us
after 20 ms idle), but it lives inside the segment, so a re-attached process needs nothing
but the handle, one FUTEX_WAKE reaches every reader, and there is nothing to clean up.

Heads-up wake. Waking a process whose CPU has been idle for a frame interval costs 50-80 us
on a VM (the vCPU's idle exit; a futex and a FIFO measure the same), far more than the
futex itself (~8 us when the CPU was busy a moment ago). So the producer stores
``PENDING`` and wakes parked readers when it *reserves* a slot, before it copies or renders;
a reader woken with ``PENDING`` set spins (up to ``PENDING_SPIN_S``) until the frame is
published. The wake-up then overlaps the copy and a reader sees the frame within
microseconds of its publication, at the price of spinning for about one copy per frame.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

import reactor.ipc.layout as lay
import reactor.ipc.sync as sync
from reactor.ipc.errors import (
    ProducerGoneError,
    RingClosedError,
    RingError,
    RingSpaceError,
    RingTimeout,
)
from reactor.ipc.layout import (
    G_LATEST,
    G_PENDING,
    G_PPARKED,
    G_RFUTEX,
    ROW,
    S_CAPTURE,
    S_ENQUEUE,
    S_FRAME,
    S_LENGTH,
    S_PTS,
    S_SESSION,
    S_STATE,
    Policy,
    RingHandle,
    RingStats,
)
from reactor.ipc.reader import Frame, Reader
from reactor.ipc.segment import Segment

__all__ = [
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


class WriteSlot:
    """A reserved slot: render into ``array``; set metadata fields before the block ends."""

    __slots__ = ("array", "capture_ts", "frame_id", "length", "pts", "seq", "session_id", "slot")

    def __init__(
        self,
        array: Any,
        seq: int,
        slot: int,
        frame_id: int | None,
        capture_ts: int,
        session_id: int,
    ) -> None:
        self.array = array
        self.seq = seq
        self.slot = slot
        self.frame_id = frame_id
        self.capture_ts = capture_ts
        self.session_id = session_id
        self.pts: int | None = None
        self.length = 0


class ShmRing:
    """A ring of fixed-size frame slots in shared memory (see the module docstring).

    Make one with :meth:`create` (the owner) or :meth:`attach` (any other process; a ring
    pickles as its :attr:`handle`, so passing it to a spawned process attaches there). One
    object is used by one thread at a time.
    """

    def __init__(self, segment: Segment) -> None:
        self._seg = segment
        self._handle = segment.handle
        self._dtype = segment.dtype
        # The producer's hot path reads these on every frame; they are the segment's own
        # objects (the memoryview is released, for everyone, when the segment closes).
        self._m = segment.words
        self._so = segment.slot_words
        self._pin_w = segment.pin_words
        self._pid_w = segment.pid_words
        self._need_w = segment.need_words
        self._producer = False
        self._seq = 0
        self._next_slot = 0
        self._prev_slot = 0
        self._reserved = False
        self._readers: weakref.WeakSet[Reader] = weakref.WeakSet()

    # -- lifetime ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        *,
        slots: int,
        shape: tuple[int, ...] | list[int],
        dtype: str | np.dtype[Any] = "uint8",
        policy: Policy = "latest",
        max_consumers: int = 4,
        aux_bytes: int = 0,
    ) -> ShmRing:
        """Create the segment ``/dev/shm/<name>``; this process owns and unlinks it.

        ``aux_bytes`` reserves a side area of that size for the producer and for each
        reader (:class:`~reactor.ipc.cuda_ring.CudaRing` keeps its CUDA IPC handles there).
        """
        return cls(
            Segment.create(
                name,
                slots=slots,
                shape=shape,
                dtype=dtype,
                policy=policy,
                max_consumers=max_consumers,
                aux_bytes=aux_bytes,
            )
        )

    @classmethod
    def attach(cls, handle: RingHandle) -> ShmRing:
        """Open an existing ring from its handle. Attachers never unlink the segment."""
        return cls(Segment.open(handle))

    @staticmethod
    def handle_for(name: str) -> RingHandle:
        """The handle of an existing ring, read from its header: for tools and tests that
        know a ring's name but were not handed its handle."""
        return Segment.read_handle(name)

    @staticmethod
    def unlink_name(name: str) -> bool:
        """Remove ``/dev/shm/<name>`` if it exists (a supervisor's clean-up after a crash)."""
        return Segment.unlink_name(name)

    def unlink(self) -> None:
        """Remove the segment's name; mappings stay valid until each process closes.

        From the owner this also tells every reader the ring is gone."""
        self._seg.unlink()

    def close(self) -> None:
        """Detach. The producer tells readers it is gone; the owner also unlinks."""
        if self._seg.closed:
            return
        for reader in list(self._readers):
            reader.close()
        if self._producer:
            self._seg.release_producer()
        self._seg.close()

    def __enter__(self) -> ShmRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (ShmRing.attach, (self._handle,))

    # -- properties ----------------------------------------------------------------------

    @property
    def segment(self) -> Segment:
        """The shared-memory segment (for :class:`~reactor.ipc.cuda_ring.CudaRing`)."""
        return self._seg

    @property
    def handle(self) -> RingHandle:
        return self._handle

    @property
    def name(self) -> str:
        return self._handle.name

    @property
    def slots(self) -> int:
        return self._handle.slots

    @property
    def shape(self) -> tuple[int, ...]:
        return self._handle.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def policy(self) -> Policy:
        return self._handle.policy

    def stats(self) -> RingStats:
        """The ring's occupancy now: slots in use, frames dropped and written, readers."""
        self._check_open()
        h, occ = self._handle, self._seg.occupancy()
        return RingStats(name=h.name, slots=h.slots, used=occ["used"],
                         dropped=occ["dropped"], policy=h.policy, written=occ["written"],
                         consumers=occ["consumers"])

    # -- producer ------------------------------------------------------------------------

    def write(
        self,
        frame: Any,
        *,
        frame_id: int | None = None,
        capture_ts: int | None = None,
        session_id: int = 0,
        timeout: float | None = None,
        pts: int | None = None,
        length: int = 0,
    ) -> int:
        """Copy ``frame`` into the next slot and publish it; return its sequence number.

        ``capture_ts``, ``pts`` and the recorded enqueue time are CLOCK_MONOTONIC
        nanoseconds (``time.perf_counter_ns()`` on Linux). ``pts`` is the frame's
        presentation time (default: when it is published); ``length`` is how much of the
        slot holds data, for rings of variable-length items (audio samples; 0: all of it).
        A ``block`` ring waits up to ``timeout`` seconds (``None``: forever) for a free
        slot and raises :class:`RingTimeout`.
        """
        start = time.perf_counter_ns()
        arr = np.asarray(frame)
        seg = self._seg
        if arr.shape != self._handle.shape or arr.dtype != self._dtype:
            raise RingError(
                f"ring {self._handle.name!r} holds {self._handle.shape} {self._dtype} "
                f"frames; got {arr.shape} {arr.dtype}"
            )
        seq, slot = self._acquire(timeout)
        try:
            np.copyto(seg.writable[slot], arr, casting="no")
        except BaseException:
            self._abort(slot)
            raise
        self._publish(slot, seq, frame_id, start if capture_ts is None else capture_ts, session_id,
                      pts, length)
        return seq

    @contextlib.contextmanager
    def reserve(
        self,
        timeout: float | None = None,
        *,
        frame_id: int | None = None,
        capture_ts: int | None = None,
        session_id: int = 0,
    ) -> Iterator[WriteSlot]:
        """Reserve a slot to render into in place; it is published when the block exits.

        ``slot.array`` is a writable view of the slot; fields set on ``slot`` (``frame_id``,
        ``capture_ts``, ``session_id``) are published with it. If the block raises, nothing
        is published and the slot is marked empty.
        """
        start = time.perf_counter_ns()
        if self._reserved:
            raise RingError(f"ring {self._handle.name!r}: a slot is already reserved")
        seq, slot = self._acquire(timeout)
        array = self._seg.writable[slot]
        ws = WriteSlot(array, seq, slot, frame_id, capture_ts or start, session_id)
        self._reserved = True
        try:
            yield ws
        except BaseException:
            self._abort(slot)
            raise
        finally:
            self._reserved = False
        self._publish(slot, seq, ws.frame_id, ws.capture_ts, ws.session_id, ws.pts, ws.length)

    def _claim(self) -> None:
        """Become the ring's producer (one per ring; a restarted producer takes over)."""
        self._check_open()
        latest = self._seg.claim_producer()
        self._seq = latest >> 16
        self._next_slot = ((latest & 0xFFFF) + 1) % self._handle.slots if latest else 0
        self._producer = True

    def _acquire(self, timeout: float | None) -> tuple[int, int]:
        """Pick the slot for the next seq and mark it odd (being written)."""
        if not self._producer:
            self._claim()
        seq = self._seq + 1
        if self._handle.policy == "block":
            slot = seq % self._handle.slots
            self._wait_free(seq, timeout)
            self._m[self._so + slot * ROW + S_STATE] = 2 * seq + 1
        else:
            slot = self._pick_latest(seq)
        self._m[G_PENDING] = seq
        self._seg.wake_readers()  # the heads-up: readers wake while we copy (module docstring)
        return seq, slot

    def _pick_latest(self, seq: int) -> int:
        m, so, n = self._m, self._so, self._handle.slots
        latest = m[G_LATEST]
        newest = latest & 0xFFFF if latest else -1
        # Try the slot written before the newest first: with one reader the producer then
        # alternates between two slots whose lines are likelier still to be in cache, which
        # measurably shortens the copy. Otherwise round-robin.
        order = [self._prev_slot, *((self._next_slot + k) % n for k in range(n))]
        for attempt in range(3):
            pinned = {m[w] for w in self._pin_w}
            # Prefer not to overwrite the newest frame: a reader may be about to pin it.
            for k, slot in enumerate(order + order):
                if slot in pinned or (k <= n and slot == newest):
                    continue
                state = so + slot * ROW + S_STATE
                prev = m[state]
                m[state] = 2 * seq + 1
                sync.fence()  # Dekker with Reader._take_latest: store state, then load pins
                if any(m[w] == slot for w in self._pin_w):
                    m[state] = prev
                    continue
                self._next_slot = (slot + 1) % n
                self._prev_slot = newest if newest >= 0 else (slot + 1) % n
                return slot
            if attempt == 0:
                self._seg.reap(force=True)
        raise RingError(
            f"ring {self._handle.name!r}: every one of its {n} slots is held by a reader; "
            "give it more slots (rings.input_slots) than readers"
        )

    def _wait_free(self, seq: int, timeout: float | None) -> None:
        """Block policy: wait until every registered reader is done with ``seq - slots``."""
        m, seg = self._m, self._seg
        oldest = seq - self._handle.slots
        readers = list(zip(self._pid_w, self._need_w, strict=True))

        def blocked() -> bool:
            return any(m[pid] and m[need] <= oldest for pid, need in readers)

        if not blocked():
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        spin_end = time.perf_counter() + lay.SPIN_S
        while time.perf_counter() < spin_end:
            if not blocked():
                return
        while True:
            seen = m[G_RFUTEX] & 0xFFFFFFFF
            m[G_PPARKED] = 1
            sync.fence()  # Dekker with Segment.wake_producer: store parked, then re-check
            if not blocked():
                m[G_PPARKED] = 0
                return
            remaining = lay.PARK_SLICE_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                m[G_PPARKED] = 0
                holders = [m[pid] for pid, need in readers if m[pid] and m[need] <= oldest]
                raise RingTimeout(
                    f"ring {self._handle.name!r}: no free slot within {timeout} s; reader "
                    f"pid(s) {holders} still hold all {self._handle.slots} slots"
                )
            sync.futex_wait(seg.release_futex, seen, min(remaining, lay.PARK_SLICE_S))
            m[G_PPARKED] = 0
            seg.reap(force=True)

    def _publish(
        self, slot: int, seq: int, frame_id: int | None, capture_ts: int, session_id: int,
        pts: int | None = None, length: int = 0,
    ) -> None:
        m = self._m
        row = self._so + slot * ROW
        now = time.perf_counter_ns()
        m[row + S_FRAME] = seq if frame_id is None else frame_id
        m[row + S_CAPTURE] = capture_ts
        m[row + S_ENQUEUE] = now
        m[row + S_SESSION] = session_id
        m[row + S_PTS] = now if pts is None else pts
        m[row + S_LENGTH] = length
        sync.fence()  # order a memcpy's non-temporal stores before the publishing stores
        m[row + S_STATE] = 2 * seq
        m[G_LATEST] = seq << 16 | slot
        m[G_PENDING] = 0
        self._seq = seq
        seg = self._seg
        seg.wake_readers()
        if self._handle.policy == "latest" and time.monotonic() - seg.last_reap > 1.0:
            seg.reap()

    def _abort(self, slot: int) -> None:
        # Partly overwritten: neither the old nor the new frame is whole.
        self._m[self._so + slot * ROW + S_STATE] = 0
        self._m[G_PENDING] = 0

    # -- consumers -----------------------------------------------------------------------

    def reader(self) -> Reader:
        """Register a reader with its own position (at most ``max_consumers`` at once)."""
        self._check_open()
        reader = Reader(self._seg)
        self._readers.add(reader)
        return reader

    def _check_open(self) -> None:
        if self._seg.closed:
            raise RingClosedError(f"ring {self._handle.name!r} is closed in this process")
