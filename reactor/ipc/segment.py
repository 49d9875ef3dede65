"""One ring's shared-memory segment: the mapping, word access, the lock, liveness, aux blobs.

The segment is a ``/dev/shm`` file (what :mod:`multiprocessing.shared_memory` makes), opened
directly so that no process involves a ``resource_tracker``: the creator alone unlinks it, on
close or at exit; attachers never unlink. A tracker is deliberately not used: a killed
creator's tracker unlinks the name some time later, by which point a restarted supervisor
may have created a new ring under it. Instead the supervisor calls
:meth:`Segment.unlink_name` before re-creating a ring after a crash.

:class:`Segment` is the only code that maps, locks, registers in or unlinks a segment; the
producer (:class:`~reactor.ipc.ring.ShmRing`), its readers
(:class:`~reactor.ipc.reader.Reader`) and :class:`~reactor.ipc.cuda_ring.CudaRing` use it
through its public members. Cold paths (creating, registering, reaping, liveness) are
methods. The hot paths read and write single words of :attr:`Segment.words` at the word
indices the segment publishes (``slot_words``, ``pin_words``, ...): each access is one
aligned 8-byte load or store, and a method call per word would cost more than the word.
The byte layout is in :mod:`reactor.ipc.layout`; the handshakes that order these words are
in :mod:`reactor.ipc.ring`.

Long module: a little past 500 lines, because it is all that the three ring classes share;
split further, they would reach into each other again.
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

import reactor.ipc.layout as lay
import reactor.ipc.sync as sync
from reactor.ipc.errors import ProducerGoneError, RingClosedError, RingError, RingSpaceError
from reactor.ipc.layout import (
    C_DROPPED,
    C_NEED,
    C_PARKED,
    C_PID,
    C_PIN,
    C_POS,
    C_START,
    C_TOKEN,
    G_LATEST,
    G_PPARKED,
    G_RFUTEX,
    G_WFUTEX,
    ROW,
    Policy,
    RingHandle,
    layout,
)
from reactor.runtime import stats as procstats

__all__ = ["Segment"]


def _path(name: str) -> str:
    if not name or "/" in name or "\0" in name:
        raise RingError(f"invalid ring name {name!r}: use a non-empty name without '/'")
    return os.path.join(lay.SHM_DIR, name)


def _unlink(name: str) -> bool:
    try:
        os.unlink(_path(name))
    except FileNotFoundError:
        return False
    return True


def _release_mapping(fd: int, owner: bool, name: str) -> None:
    """Finalizer (also run at exit): close the fd; the owner also unlinks the segment."""
    with contextlib.suppress(OSError):
        os.close(fd)
    if owner:
        _unlink(name)


class Segment:
    """A ring's mapped ``/dev/shm`` segment (see the module docstring).

    Make one with :meth:`create` (the owner, who alone unlinks it) or :meth:`open`. The
    hot-path state is plain attributes, so that a word is one attribute lookup away:

    * ``words``: the whole segment as signed 64-bit words (a ``memoryview`` cast ``"q"``);
    * ``slot_words``: the word index of slot 0's row (slot ``i``'s is ``+ i * ROW``);
    * ``pid_words``, ``pin_words``, ``need_words``, ``parked_words``: the word index of
      that field in each consumer row;
    * ``writable``, ``readonly``: each slot's frame as a writable (producer) and a
      read-only (reader) array;
    * ``write_futex``, ``release_futex``: the futex words' addresses (for :mod:`reactor.ipc.sync`);
    * ``last_reap``: ``time.monotonic()`` of this process's last :meth:`reap` (read-only).
    """

    def __init__(self, handle: RingHandle, fd: int, mm: mmap.mmap, *, owner: bool) -> None:
        """Map ``mm`` (``fd``'s whole file). The owner (:meth:`create`) writes a new header;
        anyone else (:meth:`open`) checks the one there."""
        if not owner:
            magic, version = np.frombuffer(mm[:16], dtype="<i8").tolist()  # a copy: no export
            if magic != lay.MAGIC or version != lay.VERSION:
                mm.close()
                os.close(fd)
                raise RingError(
                    f"ring {handle.name!r} at {_path(handle.name)} is not a reactor ring "
                    f"(version {lay.VERSION})"
                )
        self._handle = handle
        self._fd = fd
        self._mm = mm
        self._owner = owner
        self._closed = False
        self._unlinked = False
        self.last_reap = 0.0
        base = np.frombuffer(mm, dtype=np.uint8)
        cons, slot_tab, aux, data = layout(handle.slots, handle.max_consumers, handle.aux_bytes)
        self._base = base
        self._g = base[: lay.GLOBAL_BYTES].view(np.int64)
        self._c = base[cons:slot_tab].view(np.int64).reshape(handle.max_consumers, ROW)
        self._s = base[slot_tab:aux].view(np.int64).reshape(handle.slots, ROW)
        # A producer returning from a frame's worth of computing finds its caches cold, and
        # each numpy scalar access then costs several microseconds; a memoryview word access
        # runs far less code.
        self.words = memoryview(mm).cast("q")
        co = cons // 8
        self.slot_words = slot_tab // 8
        maxc = handle.max_consumers
        self.pid_words = [co + i * ROW + C_PID for i in range(maxc)]
        self.pin_words = [co + i * ROW + C_PIN for i in range(maxc)]
        self.need_words = [co + i * ROW + C_NEED for i in range(maxc)]
        self.parked_words = [co + i * ROW + C_PARKED for i in range(maxc)]
        self._aux_off = aux
        self._dtype = dtype = np.dtype(handle.dtype)
        nbytes = int(np.prod(handle.shape, dtype=np.int64)) * dtype.itemsize
        self.writable: list[np.ndarray] = []
        self.readonly: list[np.ndarray] = []
        for i in range(handle.slots):
            off = data + i * handle.slot_bytes
            view = base[off : off + nbytes].view(dtype).reshape(handle.shape)
            ro = view.view()
            ro.flags.writeable = False
            self.writable.append(view)
            self.readonly.append(ro)
        addr = base.ctypes.data
        self.write_futex = addr + G_WFUTEX * 8
        self.release_futex = addr + G_RFUTEX * 8
        self._finalizer = weakref.finalize(self, _release_mapping, fd, owner, handle.name)
        if owner:  # a new segment (create): write its header
            lay.write_header(self._g, handle, data)
            self._c[:, C_PIN] = -1
            sync.populate(base.ctypes.data, handle.total_bytes)
            self._g[lay.G_MAGIC] = lay.MAGIC  # last: an attacher that sees it sees a whole header
            return
        sync.populate(base.ctypes.data, handle.total_bytes)

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
    ) -> Segment:
        """Create ``/dev/shm/<name>`` and write its header; this process owns and unlinks it."""
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
        aux_bytes = -(-aux_bytes // 64) * 64
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
        return cls(handle, fd, mm, owner=True)

    @classmethod
    def open(cls, handle: RingHandle) -> Segment:
        """Map an existing segment from its handle. Openers never unlink it."""
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
        return cls(handle, fd, mm, owner=False)

    @staticmethod
    def read_handle(name: str) -> RingHandle:
        """The handle of an existing segment, read from its header."""
        path = _path(name)
        try:
            with open(path, "rb") as f:
                g = np.frombuffer(f.read(lay.GLOBAL_BYTES), dtype="<i8")
                total = os.fstat(f.fileno()).st_size
        except FileNotFoundError:
            raise RingClosedError(f"ring {name!r} does not exist at {path}") from None
        if len(g) < lay.G_AUX + 1 or g[lay.G_MAGIC] != lay.MAGIC:
            raise RingError(f"{path} is not a reactor ring")
        return lay.read_header(g, name, total)

    @staticmethod
    def unlink_name(name: str) -> bool:
        """Remove ``/dev/shm/<name>`` if it exists; whether it did."""
        return _unlink(name)

    def unlink(self) -> None:
        """Remove the segment's name; mappings stay valid until each process closes.

        From the owner this also tells every reader the ring is gone."""
        if self._closed or self._unlinked:
            return
        if self._owner:
            self._g[lay.G_CLOSED] = 1
            self.wake_readers()
        _unlink(self._handle.name)
        self._unlinked = True
        # From now on the finalizer only closes the fd: the name may belong to a new ring.
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _release_mapping, self._fd, False, "")

    def close(self) -> None:
        """Unmap (once nothing views the mapping any more); the owner also unlinks."""
        if self._closed:
            return
        if self._owner:
            self.unlink()
        self._finalizer()  # closes the fd
        self._closed = True
        empty: Any = np.empty(0, np.int64)
        self._g = self._c = self._s = self._base = empty
        self.words.release()
        self.writable, self.readonly = [], []
        # Frames a caller still holds keep the mapping alive; it goes when they do.
        with contextlib.suppress(BufferError):
            self._mm.close()

    # -- properties ----------------------------------------------------------------------

    @property
    def handle(self) -> RingHandle:
        return self._handle

    @property
    def name(self) -> str:
        return self._handle.name

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def closed(self) -> bool:
        """Whether this process closed its mapping."""
        return self._closed

    @property
    def producer_generation(self) -> int:
        """Bumped each time a producer claims the ring."""
        return int(self._g[lay.G_PGEN])

    # -- the lock and the consumer table -------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise (de)registrations across processes; the kernel drops it if we die."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def reap(self, force: bool = False) -> None:
        """Release the registrations of readers whose process died."""
        self.last_reap = time.monotonic()
        c = self._c
        dead = [
            i
            for i in np.flatnonzero(c[:, C_PID]).tolist()
            if not procstats.alive(int(c[i, C_PID]), int(c[i, C_START]))
        ]
        if not dead and not force:
            return
        with self.locked():
            for i in dead:
                if c[i, C_PID] != 0 and not procstats.alive(int(c[i, C_PID]), int(c[i, C_START])):
                    self._g[lay.G_RETIRED] += c[i, C_DROPPED]
                    c[i, C_PIN] = -1
                    c[i, C_PID] = 0

    def register(self, *, block: bool) -> tuple[int, int, int]:
        """Take a free consumer row for this process; return ``(index, token, pos)``.

        A ``latest`` reader starts just before the newest frame (readable at once), a
        ``block`` reader after it (frames from now on). ``pos`` is the last seq taken.
        """
        self.reap()
        h, g, c = self._handle, self._g, self._c
        limit = h.max_consumers if block else min(h.max_consumers, h.slots - 1)
        me = os.getpid()
        with self.locked():
            free = np.flatnonzero(c[:, C_PID] == 0).tolist()
            if h.max_consumers - len(free) >= limit or not free:
                keys = "rings.output_slots" if block else "rings.input_slots"
                raise RingError(
                    f"ring {h.name!r} already has {h.max_consumers - len(free)} readers, its "
                    f"limit ({h.slots} slots, max_consumers={h.max_consumers}); raise {keys}"
                )
            i = free[0]
            newest = int(g[G_LATEST]) >> 16
            pos = newest if block else max(newest - 1, 0)
            c[i, C_START] = procstats.start_time(me)
            c[i, C_PIN], c[i, C_POS], c[i, C_NEED] = -1, pos, pos + 1
            c[i, C_DROPPED], c[i, C_PARKED] = 0, 0
            c[i, C_TOKEN] += 1
            c[i, C_PID] = me  # last: a producer that sees the pid sees the whole row
        token = int(c[i, C_TOKEN])
        while block:
            # A producer that checked the table before our row was visible may still
            # write one more frame; re-read until LATEST is stable across a fence.
            sync.fence()
            newest = int(g[G_LATEST]) >> 16
            if newest == pos:
                break
            pos = newest
            c[i, C_POS], c[i, C_NEED] = newest, newest + 1
        return i, token, pos

    def unregister(self, index: int, token: int, dropped: int) -> None:
        """Free consumer row ``index`` if this process still holds it under ``token``,
        adding the reader's ``dropped`` count to the ring's."""
        c = self._c
        with self.locked():
            if c[index, C_PID] == os.getpid() and c[index, C_TOKEN] == token:
                self._g[lay.G_RETIRED] += dropped
                c[index, C_PIN], c[index, C_PARKED] = -1, 0
                c[index, C_PID] = 0

    def consumer_row(self, index: int) -> int:
        """Word index of consumer row ``index`` (add a ``C_*`` field index)."""
        return self.pid_words[index] - C_PID

    def registrations(self) -> list[tuple[int, int]]:
        """``(index, token)`` of every registered consumer row."""
        c = self._c
        return [
            (i, int(c[i, C_TOKEN])) for i in range(self._handle.max_consumers) if c[i, C_PID] != 0
        ]

    def occupancy(self) -> dict[str, int]:
        """``used`` (slots a reader still needs), ``dropped``, ``written``, ``consumers``."""
        c, s = self._c, self._s
        live = c[:, C_PID] != 0
        seqs = s[:, lay.S_STATE] // 2
        published = (s[:, lay.S_STATE] % 2 == 0) & (seqs > 0)
        used = 0
        if live.any():
            if self._handle.policy == "block":
                floor = int(c[live, C_NEED].min())
                needed = published & (seqs >= floor)
            else:
                needed = published & (seqs > int(c[live, C_POS].min()))
                pins = c[live, C_PIN]
                needed[pins[pins >= 0]] = True
            used = int(needed.sum())
        return {
            "used": used,
            "dropped": int(self._g[lay.G_RETIRED]) + int(c[live, C_DROPPED].sum()),
            "written": int(self._g[G_LATEST]) >> 16,
            "consumers": int(live.sum()),
        }

    # -- the producer's liveness ---------------------------------------------------------

    def claim_producer(self) -> int:
        """Record this process as the ring's producer and return ``LATEST``.

        One producer per ring; a restarted producer takes over from a dead one."""
        g, me = self._g, os.getpid()
        with self.locked():
            pid = int(g[lay.G_PPID])
            if (
                g[lay.G_PSTATE] == lay.P_ACTIVE
                and pid != me
                and procstats.alive(pid, int(g[lay.G_PSTART]))
            ):
                raise RingError(
                    f"ring {self._handle.name!r} already has a producer (pid {pid}); "
                    "a ring has exactly one"
                )
            g[lay.G_PPID], g[lay.G_PSTART] = me, procstats.start_time(me)
            g[lay.G_PGEN] += 1
            g[lay.G_PSTATE] = lay.P_ACTIVE
        return int(g[G_LATEST])

    def release_producer(self) -> None:
        """Mark the producer closed, if it is this process, and wake the readers."""
        if self._g[lay.G_PPID] == os.getpid():
            self._g[lay.G_PSTATE] = lay.P_CLOSED
            self.wake_readers()

    def check_producer(self) -> None:
        """Raise :class:`RingClosedError` if the owner or the producer closed the ring, or
        :class:`ProducerGoneError` if the producer died."""
        g, name = self._g, self._handle.name
        if g[lay.G_CLOSED]:
            raise RingClosedError(f"ring {name!r} was closed by its owner")
        state = int(g[lay.G_PSTATE])
        if state == lay.P_CLOSED:
            raise RingClosedError(f"ring {name!r}: its producer closed it")
        pid = int(g[lay.G_PPID])
        if state == lay.P_ACTIVE and not procstats.alive(pid, int(g[lay.G_PSTART])):
            raise ProducerGoneError(f"ring {name!r}: its producer (pid {pid}) died")

    # -- wake-ups (the waker's half of the parking handshake in reactor.ipc.ring) --------

    def wake_readers(self) -> None:
        """Bump the write futex and wake the readers parked on it."""
        m = self.words
        m[G_WFUTEX] = (m[G_WFUTEX] + 1) & 0xFFFFFFFF  # the futex is the word's low half
        sync.fence()  # Dekker with Reader.read: store the word, then load parked flags
        if any(m[w] for w in self.parked_words):
            sync.futex_wake(self.write_futex)

    def wake_producer(self, value: int) -> None:
        """Set the release futex to ``value`` (one no other reader writes) and wake a parked
        ``block`` producer."""
        m = self.words
        m[G_RFUTEX] = value & 0xFFFFFFFF
        sync.fence()  # Dekker with ShmRing._wait_free: store need, then load parked
        if m[G_PPARKED]:
            sync.futex_wake(self.release_futex)

    # -- aux blobs -----------------------------------------------------------------------
    # Byte areas (index 0: the producer, 1 + i: reader i) that CudaRing fills with pickled
    # CUDA IPC handles. Seqlock: the writer makes the version odd, writes, makes it even; a
    # reader copies and retries until it read one even version throughout.

    def _aux_view(self, index: int) -> np.ndarray:
        size = self._handle.aux_bytes
        off = self._aux_off + index * size
        return self._base[off : off + size]

    def aux_version(self, index: int) -> int:
        """The seqlock version of aux blob ``index`` (even when whole)."""
        return int(self._aux_view(index)[:8].view(np.int64)[0])

    def aux_write(self, index: int, payload: bytes) -> None:
        """Replace aux blob ``index`` with ``payload``."""
        view = self._aux_view(index)
        if len(payload) + 16 > len(view):
            raise RingError(
                f"ring {self._handle.name!r}: CUDA handles of {len(payload)} bytes too big"
            )
        words = view[:16].view(np.int64)
        words[0] += 1
        words[1] = len(payload)
        view[16 : 16 + len(payload)] = np.frombuffer(payload, np.uint8)
        words[0] += 1

    def aux_read(self, index: int) -> tuple[int, bytes]:
        """``(version, payload)`` of aux blob ``index``, read whole."""
        view = self._aux_view(index)
        words = view[:16].view(np.int64)
        while True:
            version = int(words[0])
            payload = view[16 : 16 + int(words[1])].tobytes()
            if version % 2 == 0 and int(words[0]) == version:
                return version, payload
            time.sleep(0.0001)
