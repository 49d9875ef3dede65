"""ShmRing: fixed-size frame slots in one POSIX shared-memory segment.

One producer, up to ``max_consumers`` readers, each with its own read position. The segment
is a ``/dev/shm`` file (what :mod:`multiprocessing.shared_memory` makes), opened directly so
that no process involves a ``resource_tracker``: the creator alone unlinks it, on
:meth:`ShmRing.close` or at exit; attachers never unlink. A tracker is deliberately not
used: a killed creator's tracker unlinks the name some time later, by which point a
restarted supervisor may have created a new ring under it. Instead the supervisor calls
:meth:`ShmRing.unlink_name` before re-creating a ring after a crash.

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
    ...   aux blobs (CudaRing only): (1 + max_consumers) x aux bytes
    page  slot data (first page boundary after the aux blobs), ``slots`` x stride, the
          stride being the frame's bytes rounded up to a page

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
import fcntl
import mmap
import os
import time
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from reactor.ipc import layout as lay
from reactor.ipc import sync
from reactor.ipc.errors import (
    ProducerGoneError,
    RingClosedError,
    RingError,
    RingSpaceError,
    RingTimeout,
)
from reactor.ipc.layout import (
    C_NEED,
    C_PARKED,
    C_PID,
    C_PIN,
    G_LATEST,
    G_PENDING,
    G_PPARKED,
    G_RFUTEX,
    G_WFUTEX,
    ROW,
    S_CAPTURE,
    S_ENQUEUE,
    S_FRAME,
    S_SESSION,
    S_STATE,
    Policy,
    RingHandle,
    layout,
)
from reactor.ipc.reader import Frame, Reader, WriteSlot

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


def _path(name: str) -> str:
    if not name or "/" in name or "\0" in name:
        raise RingError(f"invalid ring name {name!r}: use a non-empty name without '/'")
    return os.path.join(lay.SHM_DIR, name)


class ShmRing:
    """A ring of fixed-size frame slots in shared memory (see the module docstring).

    Make one with :meth:`create` (the owner) or :meth:`attach` (any other process; a ring
    pickles as its :attr:`handle`, so passing it to a spawned process attaches there). One
    object is used by one thread at a time.
    """

    def __init__(self, handle: RingHandle, fd: int, mm: mmap.mmap, *, owner: bool) -> None:
        self._handle = handle
        self._fd = fd
        self._mm = mm
        self._owner = owner
        self._closed = False
        base = np.frombuffer(mm, dtype=np.uint8)
        cons, slot_tab, aux, data = layout(handle.slots, handle.max_consumers, handle.aux_bytes)
        self._base = base
        self._g = base[: lay.GLOBAL_BYTES].view(np.int64)
        self._c = base[cons:slot_tab].view(np.int64).reshape(handle.max_consumers, ROW)
        self._s = base[slot_tab:aux].view(np.int64).reshape(handle.slots, ROW)
        # Hot paths read and write single words through this memoryview: each access is one
        # aligned 8-byte load or store, and runs far less code than a numpy scalar access,
        # which matters because a producer returning from a frame's worth of computing
        # finds its caches cold (each numpy call then costs several microseconds).
        self._m = memoryview(mm).cast("q")
        co, so = cons // 8, slot_tab // 8
        self._so = so
        maxc = handle.max_consumers
        self._pid_w = [co + i * ROW + C_PID for i in range(maxc)]
        self._pin_w = [co + i * ROW + C_PIN for i in range(maxc)]
        self._need_w = [co + i * ROW + C_NEED for i in range(maxc)]
        self._parked_w = [co + i * ROW + C_PARKED for i in range(maxc)]
        self._aux_off = aux
        self._dtype = dtype = np.dtype(handle.dtype)
        nbytes = int(np.prod(handle.shape, dtype=np.int64)) * dtype.itemsize
        self._rw: list[np.ndarray] = []
        self._ro: list[np.ndarray] = []
        for i in range(handle.slots):
            off = data + i * handle.slot_bytes
            view = base[off : off + nbytes].view(dtype).reshape(handle.shape)
            ro = view.view()
            ro.flags.writeable = False
            self._rw.append(view)
            self._ro.append(ro)
        addr = base.ctypes.data
        self._wfutex = addr + G_WFUTEX * 8
        self._rfutex = addr + G_RFUTEX * 8
        self._producer = False
        self._seq = 0
        self._next_slot = 0
        self._prev_slot = 0
        self._reserved = False
        self._unlinked = False
        self._last_reap = 0.0
        self._readers: weakref.WeakSet[Reader] = weakref.WeakSet()
        self._finalizer = weakref.finalize(self, _release_mapping, fd, owner, handle.name)

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
        _aux_bytes: int = 0,
    ) -> ShmRing:
        """Create the segment ``/dev/shm/<name>``; this process owns and unlinks it."""
        if policy not in lay.POLICIES:
            raise RingError(f"ring {name!r}: policy must be 'latest' or 'block', not {policy!r}")
        if slots < 2 or slots > 0xFFFF:
            raise RingError(f"ring {name!r}: slots must be between 2 and 65535, got {slots}")
        if not 1 <= max_consumers <= 64:
            raise RingError(f"ring {name!r}: max_consumers must be 1..64, got {max_consumers}")
        shape = tuple(int(d) for d in shape)
        if not 1 <= len(shape) <= lay.MAX_NDIM or min(shape) < 1:
            raise RingError(f"ring {name!r}: shape must be 1..8 positive dims, got {shape}")
        dt = np.dtype(dtype)
        if dt.hasobject or len(dt.str) > 8:
            raise RingError(f"ring {name!r}: dtype {dt} cannot live in shared memory")
        path = _path(name)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        stride = -(-nbytes // lay.PAGE) * lay.PAGE
        aux_bytes = -(-_aux_bytes // 64) * 64
        data_off = layout(slots, max_consumers, aux_bytes)[3]
        total = data_off + slots * stride
        st = os.statvfs(lay.SHM_DIR)
        free = st.f_bavail * st.f_frsize
        if total > free:
            raise RingSpaceError(
                f"ring {name!r} needs {total} bytes of shared memory ({slots} slots of "
                f"{'x'.join(map(str, shape))} {dt}) but {lay.SHM_DIR} has {free} bytes free; "
                "lower rings.input_slots / rings.output_slots or video.width / video.height, "
                "or give the machine a larger /dev/shm (docker: --shm-size)"
            )
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise RingError(
                f"ring {name!r} already exists at {path} (left by a crashed daemon?); "
                f"ShmRing.unlink_name({name!r}) removes it"
            ) from None
        try:
            os.ftruncate(fd, total)
            mm = mmap.mmap(fd, total)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        handle = RingHandle(
            name, slots, shape, dt.str, policy, max_consumers, stride, total, aux_bytes
        )
        ring = cls(handle, fd, mm, owner=True)
        g = ring._g
        g[lay.G_VERSION], g[lay.G_SLOTS], g[lay.G_STRIDE], g[lay.G_MAXC] = (
            lay.VERSION,
            slots,
            stride,
            max_consumers,
        )
        g[lay.G_POLICY], g[lay.G_NDIM], g[lay.G_DATA] = lay.POLICIES[policy], len(shape), data_off
        g[lay.G_AUX] = aux_bytes
        g[lay.G_SHAPE : lay.G_SHAPE + len(shape)] = shape
        g[lay.G_DTYPE] = int.from_bytes(dt.str.encode().ljust(8, b"\0"), "little")
        ring._c[:, C_PIN] = -1
        sync.populate(ring._base.ctypes.data, total)
        g[lay.G_MAGIC] = lay.MAGIC  # last: an attacher that sees the magic sees a whole header
        return ring

    @classmethod
    def attach(cls, handle: RingHandle) -> ShmRing:
        """Open an existing ring from its handle. Attachers never unlink the segment."""
        path = _path(handle.name)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise RingClosedError(
                f"ring {handle.name!r} does not exist at {path}: its owner has closed it"
            ) from None
        try:
            size = os.fstat(fd).st_size
            if size != handle.total_bytes:
                raise RingError(
                    f"ring {handle.name!r} is {size} bytes, the handle says "
                    f"{handle.total_bytes}: it was recreated with another size; re-read its handle"
                )
            mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        ring = cls(handle, fd, mm, owner=False)
        g = ring._g
        if g[lay.G_MAGIC] != lay.MAGIC or g[lay.G_VERSION] != lay.VERSION:
            ring.close()
            raise RingError(f"ring {handle.name!r} at {path} is not a reactor ring (version 1)")
        sync.populate(ring._base.ctypes.data, size)
        return ring

    @staticmethod
    def handle_for(name: str) -> RingHandle:
        """The handle of an existing ring, read from its header: for tools and tests that
        know a ring's name but were not handed its handle."""
        path = _path(name)
        try:
            with open(path, "rb") as f:
                g = np.frombuffer(f.read(lay.GLOBAL_BYTES), dtype="<i8")
                total = os.fstat(f.fileno()).st_size
        except FileNotFoundError:
            raise RingClosedError(f"ring {name!r} does not exist at {path}") from None
        if len(g) < lay.G_AUX + 1 or g[lay.G_MAGIC] != lay.MAGIC:
            raise RingError(f"{path} is not a reactor ring")
        shape = tuple(int(x) for x in g[lay.G_SHAPE : lay.G_SHAPE + int(g[lay.G_NDIM])])
        policy = next(k for k, v in lay.POLICIES.items() if v == int(g[lay.G_POLICY]))
        return RingHandle(
            name=name, slots=int(g[lay.G_SLOTS]), shape=shape,
            dtype=g[lay.G_DTYPE : lay.G_DTYPE + 1].tobytes().rstrip(b"\0").decode(),
            policy=policy, max_consumers=int(g[lay.G_MAXC]), slot_bytes=int(g[lay.G_STRIDE]),
            total_bytes=total, aux_bytes=int(g[lay.G_AUX]),
        )

    @staticmethod
    def unlink_name(name: str) -> bool:
        """Remove ``/dev/shm/<name>`` if it exists (a supervisor's clean-up after a crash)."""
        try:
            os.unlink(_path(name))
        except FileNotFoundError:
            return False
        return True

    def unlink(self) -> None:
        """Remove the segment's name; mappings stay valid until each process closes.

        From the owner this also tells every reader the ring is gone."""
        if self._closed or self._unlinked:
            return
        if self._owner:
            self._g[lay.G_CLOSED] = 1
            self._wake_readers()
        ShmRing.unlink_name(self._handle.name)
        self._unlinked = True
        # From now on the finalizer only closes the fd: the name may belong to a new ring.
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _release_mapping, self._fd, False, "")

    def close(self) -> None:
        """Detach. The producer tells readers it is gone; the owner also unlinks."""
        if self._closed:
            return
        for reader in list(self._readers):
            reader.close()
        if self._producer and self._g[lay.G_PPID] == os.getpid():
            self._g[lay.G_PSTATE] = lay.P_CLOSED
            self._wake_readers()
        if self._owner:
            self.unlink()
        self._finalizer()  # closes the fd
        self._closed = True
        empty: Any = np.empty(0, np.int64)
        self._g = self._c = self._s = self._base = empty
        self._m.release()
        self._rw, self._ro = [], []
        # Frames a caller still holds keep the mapping alive; it goes when they do.
        with contextlib.suppress(BufferError):
            self._mm.close()

    def __enter__(self) -> ShmRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (ShmRing.attach, (self._handle,))

    # -- properties ----------------------------------------------------------------------

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
    def policy(self) -> str:
        return self._handle.policy

    def stats(self) -> dict[str, Any]:
        """``name``, ``slots``, ``used`` (slots a reader still needs), ``dropped``,
        ``policy``, ``written`` and ``consumers``."""
        self._check_open()
        c, s = self._c, self._s
        live = c[:, C_PID] != 0
        seqs = s[:, S_STATE] // 2
        published = (s[:, S_STATE] % 2 == 0) & (seqs > 0)
        used = 0
        if live.any():
            if self._handle.policy == "block":
                floor = int(c[live, C_NEED].min())
                needed = published & (seqs >= floor)
            else:
                needed = published & (seqs > int(c[live, lay.C_POS].min()))
                pins = c[live, C_PIN]
                needed[pins[pins >= 0]] = True
            used = int(needed.sum())
        return {
            "name": self._handle.name,
            "slots": self._handle.slots,
            "used": used,
            "dropped": int(self._g[lay.G_RETIRED]) + int(c[live, lay.C_DROPPED].sum()),
            "policy": self._handle.policy,
            "written": int(self._g[G_LATEST]) >> 16,
            "consumers": int(live.sum()),
        }

    # -- producer ------------------------------------------------------------------------

    def write(
        self,
        frame: Any,
        *,
        frame_id: int | None = None,
        capture_ts: int | None = None,
        session_id: int = 0,
        timeout: float | None = None,
    ) -> int:
        """Copy ``frame`` into the next slot and publish it; return its sequence number.

        ``capture_ts`` and the recorded enqueue time are CLOCK_MONOTONIC nanoseconds
        (``time.perf_counter_ns()`` on Linux). A ``block`` ring waits up to ``timeout``
        seconds (``None``: forever) for a free slot and raises :class:`RingTimeout`.
        """
        start = time.perf_counter_ns()
        arr = np.asarray(frame)
        if arr.shape != self._handle.shape or arr.dtype != self._dtype:
            raise RingError(
                f"ring {self._handle.name!r} holds {self._handle.shape} {self._dtype} "
                f"frames; got {arr.shape} {arr.dtype}"
            )
        seq, slot = self._acquire(timeout)
        try:
            np.copyto(self._rw[slot], arr, casting="no")
        except BaseException:
            self._abort(slot)
            raise
        self._publish(slot, seq, frame_id, start if capture_ts is None else capture_ts, session_id)
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
        ws = WriteSlot(self._rw[slot], seq, slot, frame_id, capture_ts or start, session_id)
        self._reserved = True
        try:
            yield ws
        except BaseException:
            self._abort(slot)
            raise
        finally:
            self._reserved = False
        self._publish(slot, seq, ws.frame_id, ws.capture_ts, ws.session_id)

    def _claim(self) -> None:
        """Become the ring's producer (one per ring; a restarted producer takes over)."""
        self._check_open()
        g, me = self._g, os.getpid()
        with self._locked():
            pid = int(g[lay.G_PPID])
            if (
                g[lay.G_PSTATE] == lay.P_ACTIVE
                and pid != me
                and sync.alive(pid, int(g[lay.G_PSTART]))
            ):
                raise RingError(
                    f"ring {self._handle.name!r} already has a producer (pid {pid}); "
                    "a ring has exactly one"
                )
            g[lay.G_PPID], g[lay.G_PSTART] = me, sync.start_time(me)
            g[lay.G_PGEN] += 1
            g[lay.G_PSTATE] = lay.P_ACTIVE
        latest = int(g[G_LATEST])
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
        self._wake_readers()  # the heads-up: readers wake while we copy (module docstring)
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
                self._reap(force=True)
        raise RingError(
            f"ring {self._handle.name!r}: every one of its {n} slots is held by a reader; "
            "give it more slots (rings.input_slots) than readers"
        )

    def _wait_free(self, seq: int, timeout: float | None) -> None:
        """Block policy: wait until every registered reader is done with ``seq - slots``."""
        m = self._m
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
            sync.fence()  # Dekker with Reader._wake_producer: store parked, then re-check
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
            sync.futex_wait(self._rfutex, seen, min(remaining, lay.PARK_SLICE_S))
            m[G_PPARKED] = 0
            self._reap(force=True)

    def _publish(
        self, slot: int, seq: int, frame_id: int | None, capture_ts: int, session_id: int
    ) -> None:
        m = self._m
        row = self._so + slot * ROW
        m[row + S_FRAME] = seq if frame_id is None else frame_id
        m[row + S_CAPTURE] = capture_ts
        m[row + S_ENQUEUE] = time.perf_counter_ns()
        m[row + S_SESSION] = session_id
        sync.fence()  # order a memcpy's non-temporal stores before the publishing stores
        m[row + S_STATE] = 2 * seq
        m[G_LATEST] = seq << 16 | slot
        m[G_PENDING] = 0
        self._seq = seq
        self._wake_readers()
        if self._handle.policy == "latest" and time.monotonic() - self._last_reap > 1.0:
            self._reap()

    def _abort(self, slot: int) -> None:
        # Partly overwritten: neither the old nor the new frame is whole.
        self._m[self._so + slot * ROW + S_STATE] = 0
        self._m[G_PENDING] = 0

    def _wake_readers(self) -> None:
        m = self._m
        m[G_WFUTEX] = (m[G_WFUTEX] + 1) & 0xFFFFFFFF  # the futex is the word's low half
        sync.fence()  # Dekker with Reader.read: store the word, then load parked flags
        if any(m[w] for w in self._parked_w):
            sync.futex_wake(self._wfutex)

    # -- consumers -----------------------------------------------------------------------

    def reader(self) -> Reader:
        """Register a reader with its own position (at most ``max_consumers`` at once)."""
        self._check_open()
        reader = Reader(self)
        self._readers.add(reader)
        return reader

    def _reap(self, force: bool = False) -> None:
        """Release the registrations of readers whose process died."""
        self._last_reap = time.monotonic()
        c = self._c
        dead = [
            i
            for i in np.flatnonzero(c[:, C_PID]).tolist()
            if not sync.alive(int(c[i, C_PID]), int(c[i, lay.C_START]))
        ]
        if not dead and not force:
            return
        with self._locked():
            for i in dead:
                if c[i, C_PID] != 0 and not sync.alive(int(c[i, C_PID]), int(c[i, lay.C_START])):
                    self._g[lay.G_RETIRED] += c[i, lay.C_DROPPED]
                    c[i, C_PIN] = -1
                    c[i, C_PID] = 0

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise (de)registrations across processes; the kernel drops it if we die."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _check_open(self) -> None:
        if self._closed:
            raise RingClosedError(f"ring {self._handle.name!r} is closed in this process")


def _release_mapping(fd: int, owner: bool, name: str) -> None:
    """Finalizer (also run at exit): close the fd; the owner also unlinks the segment."""
    with contextlib.suppress(OSError):
        os.close(fd)
    if owner:
        ShmRing.unlink_name(name)
