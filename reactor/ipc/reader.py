"""The consumer side of a ring: :class:`Reader` and the :class:`Frame` it hands out.

A reader registers a row in the segment's consumer table (:class:`~reactor.ipc.segment.Segment`)
and follows the protocol in :mod:`reactor.ipc.ring`; the comments here name which handshake
each fence belongs to.
"""

from __future__ import annotations

import os
import time

import numpy as np

import reactor.ipc.layout as lay
import reactor.ipc.sync as sync
from reactor.ipc.errors import RingClosedError
from reactor.ipc.layout import (
    C_DROPPED,
    C_NEED,
    C_PARKED,
    C_PIN,
    C_POS,
    G_LATEST,
    G_PENDING,
    G_WFUTEX,
    ROW,
    S_CAPTURE,
    S_ENQUEUE,
    S_FRAME,
    S_LENGTH,
    S_PTS,
    S_SESSION,
    S_STATE,
)
from reactor.ipc.segment import Segment

__all__ = ["Frame", "Reader"]


class Frame:
    """A frame handed to a reader.

    ``array`` is a read-only, zero-copy view of the slot, valid until :meth:`release` or
    the reader's next ``read()``; copy it to keep it longer. Timestamps are
    CLOCK_MONOTONIC nanoseconds (``time.perf_counter_ns()``), comparable across processes;
    ``pts`` is the presentation time the producer gave (its enqueue time if it gave none),
    and ``length`` how much of the slot holds data in a ring of variable-length items
    (0: all of it).
    """

    __slots__ = (
        "_reader",
        "array",
        "capture_ts",
        "enqueue_ts",
        "frame_id",
        "length",
        "pts",
        "seq",
        "session_id",
        "slot",
    )

    def __init__(
        self,
        reader: Reader,
        array: np.ndarray,
        seq: int,
        slot: int,
        frame_id: int,
        capture_ts: int,
        enqueue_ts: int,
        session_id: int,
        pts: int = 0,
        length: int = 0,
    ) -> None:
        self._reader = reader
        self.pts = pts
        self.length = length
        self.array = array
        self.seq = seq
        self.slot = slot
        self.frame_id = frame_id
        self.capture_ts = capture_ts
        self.enqueue_ts = enqueue_ts
        self.session_id = session_id

    def release(self) -> None:
        """Hand the slot back to the producer (idempotent)."""
        if self._reader.frame is self:
            self._reader.release()

    def __enter__(self) -> Frame:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Frame(seq={self.seq}, frame_id={self.frame_id}, session_id={self.session_id})"


class Reader:
    """One consumer's registration and read position. Make it with ``ring.reader()``.

    A ``latest`` reader gets the newest frame each time and counts the ones it skipped in
    :attr:`dropped`; a ``block`` reader gets every frame written after it registered, in
    order, and the producer waits for it.
    """

    def __init__(self, segment: Segment) -> None:
        self._seg = segment
        self._block = segment.handle.policy == "block"
        self._slots = segment.handle.slots
        self._frame: Frame | None = None
        self._dropped = 0
        self._releases = 0
        self._spun = 0  # the PENDING seq this reader last spun for
        self._closed = False
        self._index, self._token, self._pos = segment.register(block=self._block)
        self._row = segment.consumer_row(self._index)  # word index of our consumer row

    @property
    def dropped(self) -> int:
        """Frames this reader skipped (``latest`` policy) since it registered."""
        return self._dropped

    @property
    def frame(self) -> Frame | None:
        """The frame this reader holds (the last one read and not yet released)."""
        return self._frame

    @property
    def index(self) -> int:
        """This reader's row in the ring's consumer table."""
        return self._index

    @property
    def token(self) -> int:
        """Tells this registration of the row from earlier and later ones."""
        return self._token

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame, waiting up to ``timeout`` seconds (``None``: forever).

        Returns ``None`` on timeout. Raises :class:`RingClosedError` when the owner or the
        producer closed the ring and :class:`ProducerGoneError` when the producer died
        (after the frames still in the ring have been read); a later ``read()`` succeeds
        again once a restarted producer writes.
        """
        if self._closed:
            raise RingClosedError(f"reader of ring {self._seg.name!r} is closed")
        self.release()
        take = self._take_block if self._block else self._take_latest
        frame = take()
        if frame is not None:
            return frame
        seg = self._seg
        deadline = None if timeout is None else time.monotonic() + timeout
        spin_end = time.perf_counter() + lay.SPIN_S
        while time.perf_counter() < spin_end:
            frame = take()
            if frame is not None:
                return frame
        m, parked = seg.words, self._row + C_PARKED
        while True:
            # Frames still in the ring come first: only an empty ring reports its end.
            frame = take()
            if frame is not None:
                return frame
            seg.check_producer()
            seen = m[G_WFUTEX] & 0xFFFFFFFF
            m[parked] = 1
            sync.fence()  # Dekker with Segment.wake_readers: store parked, then re-check
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
                sync.futex_wait(seg.write_futex, seen, min(remaining, lay.PARK_SLICE_S))
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
        seg = self._seg
        m = seg.words
        latest = m[G_LATEST]
        seq = latest >> 16
        if seq <= self._pos:
            return None
        slot = latest & 0xFFFF
        row = self._row
        m[row + C_PIN] = slot
        sync.fence()  # Dekker with ShmRing._pick_latest: store the pin, then load state
        state = m[seg.slot_words + slot * ROW + S_STATE]
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
        seg = self._seg
        m, nxt = seg.words, self._pos + 1
        if m[G_LATEST] >> 16 < nxt:
            return None
        slot = nxt % self._slots
        row = self._row
        if m[seg.slot_words + slot * ROW + S_STATE] != 2 * nxt:
            # Only possible for a frame written while we were registering: skip it.
            self._dropped += 1
            self._pos = nxt
            m[row + C_POS], m[row + C_NEED], m[row + C_DROPPED] = nxt, nxt + 1, self._dropped
            return None
        self._pos = nxt
        m[row + C_POS] = nxt  # need stays nxt while we hold it
        return self._make(nxt, slot)

    def _make(self, seq: int, slot: int) -> Frame:
        seg = self._seg
        row = seg.slot_words + slot * ROW
        meta = seg.words[row : row + ROW].tolist()
        frame = Frame(
            self,
            seg.readonly[slot],
            seq,
            slot,
            meta[S_FRAME],
            meta[S_CAPTURE],
            meta[S_ENQUEUE],
            meta[S_SESSION],
            meta[S_PTS],
            meta[S_LENGTH],
        )
        self._frame = frame
        return frame

    def release(self) -> None:
        """Hand the current frame's slot back (``read()`` does this for you)."""
        frame = self._frame
        if frame is None:
            return
        self._frame = None
        m = self._seg.words
        if not self._block:
            m[self._row + C_PIN] = -1
            return
        m[self._row + C_NEED] = frame.seq + 1
        self._releases += 1
        # A value no other reader writes: several readers race on this word without
        # atomics, and a parked producer must see it change (see ring's docstring).
        self._seg.wake_producer(self._releases << 6 | self._index)

    def close(self) -> None:
        """Release the current frame and the registration."""
        if self._closed:
            return
        self._closed = True
        seg = self._seg
        if seg.closed:
            return
        self._frame = None
        seg.unregister(self._index, self._token, self._dropped)
        if self._block:
            self._releases += 1
            seg.wake_producer(self._releases << 6 | self._index)

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown or the ring already unmapped
            pass
