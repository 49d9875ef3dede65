"""The consumer side of a :class:`~reactor.ipc.ring.ShmRing`, and the frame objects.

See :mod:`reactor.ipc.ring` for the layout and the memory-ordering argument; the comments
here name which handshake each fence belongs to.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from reactor.ipc import layout as lay
from reactor.ipc import sync
from reactor.ipc.errors import ProducerGoneError, RingClosedError, RingError
from reactor.ipc.layout import (
    C_DROPPED,
    C_NEED,
    C_PARKED,
    C_PID,
    C_PIN,
    C_POS,
    C_START,
    C_TOKEN,
    G_CLOSED,
    G_LATEST,
    G_PENDING,
    G_PPARKED,
    G_PPID,
    G_PSTART,
    G_PSTATE,
    G_RETIRED,
    G_RFUTEX,
    G_WFUTEX,
    P_ACTIVE,
    P_CLOSED,
    ROW,
    S_CAPTURE,
    S_ENQUEUE,
    S_FRAME,
    S_SESSION,
    S_STATE,
)

if TYPE_CHECKING:
    from reactor.ipc.ring import ShmRing


class Frame:
    """A frame handed to a reader.

    ``array`` is a read-only, zero-copy view of the slot, valid until :meth:`release` or
    the reader's next ``read()``; copy it to keep it longer. Timestamps are
    CLOCK_MONOTONIC nanoseconds (``time.perf_counter_ns()``), comparable across processes.
    """

    __slots__ = (
        "_reader",
        "array",
        "capture_ts",
        "enqueue_ts",
        "frame_id",
        "seq",
        "session_id",
        "slot",
    )

    def __init__(
        self,
        reader: Reader,
        array: Any,
        seq: int,
        slot: int,
        frame_id: int,
        capture_ts: int,
        enqueue_ts: int,
        session_id: int,
    ) -> None:
        self._reader = reader
        self.array = array
        self.seq = seq
        self.slot = slot
        self.frame_id = frame_id
        self.capture_ts = capture_ts
        self.enqueue_ts = enqueue_ts
        self.session_id = session_id

    def release(self) -> None:
        """Hand the slot back to the producer (idempotent)."""
        if self._reader._frame is self:
            self._reader.release()

    def __enter__(self) -> Frame:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Frame(seq={self.seq}, frame_id={self.frame_id}, session_id={self.session_id})"


class WriteSlot:
    """A reserved slot: render into ``array``; set metadata fields before the block ends."""

    __slots__ = ("array", "capture_ts", "frame_id", "seq", "session_id", "slot")

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


class Reader:
    """One consumer's registration and read position. Make it with ``ring.reader()``.

    A ``latest`` reader gets the newest frame each time and counts the ones it skipped in
    :attr:`dropped`; a ``block`` reader gets every frame written after it registered, in
    order, and the producer waits for it.
    """

    def __init__(self, ring: ShmRing) -> None:
        self._ring = ring
        self._block = ring.policy == "block"
        self._frame: Frame | None = None
        self._dropped = 0
        self._releases = 0
        self._spun = 0  # the PENDING seq this reader last spun for
        self._closed = False
        ring._reap()
        h, g, c = ring.handle, ring._g, ring._c
        limit = h.max_consumers if self._block else min(h.max_consumers, h.slots - 1)
        me = os.getpid()
        with ring._locked():
            free = np.flatnonzero(c[:, C_PID] == 0).tolist()
            if h.max_consumers - len(free) >= limit or not free:
                keys = "rings.output_slots" if self._block else "rings.input_slots"
                raise RingError(
                    f"ring {h.name!r} already has {h.max_consumers - len(free)} readers, its "
                    f"limit ({h.slots} slots, max_consumers={h.max_consumers}); raise {keys}"
                )
            i = free[0]
            newest = int(g[G_LATEST]) >> 16
            # latest: the newest frame is readable at once; block: frames from now on.
            pos = newest if self._block else max(newest - 1, 0)
            c[i, C_START] = sync.start_time(me)
            c[i, C_PIN], c[i, C_POS], c[i, C_NEED] = -1, pos, pos + 1
            c[i, C_DROPPED], c[i, C_PARKED] = 0, 0
            c[i, C_TOKEN] += 1
            c[i, C_PID] = me  # last: a producer that sees the pid sees the whole row
        self._index = i
        self._row = ring._pid_w[i] - C_PID  # word index of our consumer row
        self._token = int(c[i, C_TOKEN])
        self._pos = pos
        while self._block:
            # A producer that checked the table before our row was visible may still
            # write one more frame; re-read until LATEST is stable across a fence.
            sync.fence()
            newest = int(g[G_LATEST]) >> 16
            if newest == self._pos:
                break
            self._pos = newest
            c[i, C_POS], c[i, C_NEED] = newest, newest + 1

    @property
    def dropped(self) -> int:
        """Frames this reader skipped (``latest`` policy) since it registered."""
        return self._dropped

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame, waiting up to ``timeout`` seconds (``None``: forever).

        Returns ``None`` on timeout. Raises :class:`RingClosedError` when the owner or the
        producer closed the ring and :class:`ProducerGoneError` when the producer died
        (after the frames still in the ring have been read); a later ``read()`` succeeds
        again once a restarted producer writes.
        """
        if self._closed:
            raise RingClosedError(f"reader of ring {self._ring.name!r} is closed")
        self.release()
        take = self._take_block if self._block else self._take_latest
        frame = take()
        if frame is not None:
            return frame
        ring = self._ring
        deadline = None if timeout is None else time.monotonic() + timeout
        spin_end = time.perf_counter() + lay.SPIN_S
        while time.perf_counter() < spin_end:
            frame = take()
            if frame is not None:
                return frame
        m, parked = ring._m, self._row + C_PARKED
        while True:
            # Frames still in the ring come first: only an empty ring reports its end.
            frame = take()
            if frame is not None:
                return frame
            self._check_producer()
            seen = m[G_WFUTEX] & 0xFFFFFFFF
            m[parked] = 1
            sync.fence()  # Dekker with ShmRing._wake_readers: store parked, then re-check
            frame = take()
            if frame is not None:
                m[parked] = 0
                return frame
            remaining = lay.PARK_SLICE_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                m[parked] = 0
                return None
            pending = m[G_PENDING]
            if pending == self._spun:  # none, or one we already waited for awake
                sync.futex_wait(ring._wfutex, seen, min(remaining, lay.PARK_SLICE_S))
                pending = m[G_PENDING]
            m[parked] = 0
            if pending == self._spun:
                frame = take()
                if frame is not None:
                    return frame
                continue
            # A frame is being written: it usually lands within one copy's time, sooner
            # than a wake-up from an idle CPU, so wait for it awake -- once per frame and
            # briefly, as a model rendering in place may hold the slot for a while.
            self._spun = pending
            pending_end = time.perf_counter() + lay.PENDING_SPIN_S
            while time.perf_counter() < pending_end:
                frame = take()
                if frame is not None:
                    return frame
                if m[G_PENDING] != pending:
                    break
                # On a busy machine the producer may need this very CPU to finish the copy.
                os.sched_yield()

    def _take_latest(self) -> Frame | None:
        m = self._ring._m
        latest = m[G_LATEST]
        seq = latest >> 16
        if seq <= self._pos:
            return None
        slot = latest & 0xFFFF
        row = self._row
        m[row + C_PIN] = slot
        sync.fence()  # Dekker with ShmRing._pick_latest: store the pin, then load state
        state = m[self._ring._so + slot * ROW + S_STATE]
        if state & 1 or state < 2 * seq:
            # Being rewritten (the producer got there before our pin) or emptied by an
            # aborted write: the frame is gone; wait for the next one.
            m[row + C_PIN] = -1
            self._dropped += seq - self._pos
            self._pos = seq
            m[row + C_POS], m[row + C_DROPPED] = seq, self._dropped
            return None
        seq = state >> 1  # may be newer than LATEST said: it is whole, and we hold it
        self._dropped += seq - self._pos - 1
        self._pos = seq
        m[row + C_POS], m[row + C_DROPPED] = seq, self._dropped
        return self._make(seq, slot)

    def _take_block(self) -> Frame | None:
        ring = self._ring
        m, nxt = ring._m, self._pos + 1
        if m[G_LATEST] >> 16 < nxt:
            return None
        slot = nxt % ring.slots
        row = self._row
        if m[ring._so + slot * ROW + S_STATE] != 2 * nxt:
            # Only possible for a frame written while we were registering: skip it.
            self._dropped += 1
            self._pos = nxt
            m[row + C_POS], m[row + C_NEED], m[row + C_DROPPED] = nxt, nxt + 1, self._dropped
            return None
        self._pos = nxt
        m[row + C_POS] = nxt  # need stays nxt while we hold it
        return self._make(nxt, slot)

    def _make(self, seq: int, slot: int) -> Frame:
        ring = self._ring
        row = ring._so + slot * ROW
        meta = ring._m[row : row + ROW].tolist()
        frame = Frame(
            self,
            ring._ro[slot],
            seq,
            slot,
            meta[S_FRAME],
            meta[S_CAPTURE],
            meta[S_ENQUEUE],
            meta[S_SESSION],
        )
        self._frame = frame
        return frame

    def release(self) -> None:
        """Hand the current frame's slot back (``read()`` does this for you)."""
        frame = self._frame
        if frame is None:
            return
        self._frame = None
        m = self._ring._m
        if not self._block:
            m[self._row + C_PIN] = -1
            return
        m[self._row + C_NEED] = frame.seq + 1
        self._wake_producer()

    def _wake_producer(self) -> None:
        ring = self._ring
        self._releases += 1
        # A value no other reader writes: several readers race on this word without
        # atomics, and a parked producer must see it change (see ring's docstring).
        ring._m[G_RFUTEX] = (self._releases << 6 | self._index) & 0xFFFFFFFF
        sync.fence()  # Dekker with ShmRing._wait_free: store need, then load parked
        if ring._m[G_PPARKED]:
            sync.futex_wake(ring._rfutex)

    def _check_producer(self) -> None:
        g, name = self._ring._g, self._ring.name
        if g[G_CLOSED]:
            raise RingClosedError(f"ring {name!r} was closed by its owner")
        state = int(g[G_PSTATE])
        if state == P_CLOSED:
            raise RingClosedError(f"ring {name!r}: its producer closed it")
        pid = int(g[G_PPID])
        if state == P_ACTIVE and not sync.alive(pid, int(g[G_PSTART])):
            raise ProducerGoneError(f"ring {name!r}: its producer (pid {pid}) died")

    def close(self) -> None:
        """Release the current frame and the registration."""
        if self._closed:
            return
        self._closed = True
        ring = self._ring
        if ring._closed:
            return
        self._frame = None
        c, i = ring._c, self._index
        with ring._locked():
            if c[i, C_PID] == os.getpid() and c[i, C_TOKEN] == self._token:
                ring._g[G_RETIRED] += self._dropped
                c[i, C_PIN], c[i, C_PARKED] = -1, 0
                c[i, C_PID] = 0
        if self._block:
            self._wake_producer()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown or the ring already unmapped
            pass
