"""CudaRing: the ring's interface with frames in device memory, shared by CUDA IPC.

The supervisor creates a CudaRing without touching CUDA: it is a :class:`ShmRing` of
1-byte slots (the *meta ring*) that carries all sequencing, policies, drop counting,
waiting and liveness, plus aux blobs for CUDA IPC handles. The pixels live elsewhere:

* The producer, on its first write, allocates one device tensor of ``slots`` frames and one
  interprocess CUDA event per slot ("ready"), and publishes ``torch``'s IPC reduction of the
  pool and the events' IPC handles in the producer blob, tagged with the meta ring's
  producer generation. A restarted producer publishes a new pool; readers notice the
  generation change and re-open, once -- never per frame.
* Each reader creates one interprocess event per slot ("released") and publishes their
  handles in its own blob; the producer opens them once per reader registration.

Ordering without CPU waits: the producer records ``ready[slot]`` on its stream after the
copy or render and only then publishes the slot through the meta ring, so a reader that sees
the frame makes its stream wait for ``ready[slot]`` (a GPU-side wait) before using the
tensor. On release a reader records ``released[slot]`` on its stream and then releases the
meta slot, so a producer that is handed the slot again makes its stream wait for every
reader's ``released[slot]`` before overwriting it. The meta ring's pins (``latest``) and
``need`` counters (``block``) decide *which* slot is free; the events make the device honour
what the CPU decided.

torch is imported on first use, so ``import reactor.ipc`` works without it.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from reactor.ipc.errors import RingError
from reactor.ipc.layout import Policy, RingHandle, RingStats
from reactor.ipc.ring import ShmRing

_AUX_BYTES = 64 * 1024


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise RingError(
            'a CudaRing needs torch with CUDA: pip install "reactor-live[torch]"'
        ) from None
    if not torch.cuda.is_available():
        raise RingError("a CudaRing needs a CUDA device, and torch sees none")
    return torch


@dataclass(frozen=True)
class CudaRingHandle:
    """Picklable handle: the meta ring's handle plus the frame shape, dtype and device."""

    meta: RingHandle
    shape: tuple[int, ...]
    dtype: str  # a torch dtype name, e.g. "uint8", "float16"
    device: int | None


class CudaFrame:
    """A frame in device memory: ``array`` (alias ``tensor``) is a view of the pool slot,
    valid until :meth:`release` or the reader's next ``read()``."""

    __slots__ = (
        "_reader",
        "array",
        "capture_ts",
        "enqueue_ts",
        "frame_id",
        "meta",
        "pts",
        "seq",
        "session_id",
        "slot",
    )

    def __init__(self, reader: CudaReader, meta: Any, tensor: Any) -> None:
        self._reader = reader
        self.meta = meta  # the meta ring's Frame, released with this one
        self.array = tensor
        self.seq, self.slot, self.frame_id = meta.seq, meta.slot, meta.frame_id
        self.capture_ts, self.enqueue_ts = meta.capture_ts, meta.enqueue_ts
        self.session_id, self.pts = meta.session_id, meta.pts

    @property
    def tensor(self) -> Any:
        return self.array

    def release(self) -> None:
        if self._reader.frame is self:
            self._reader.release()

    def __enter__(self) -> CudaFrame:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class HandleCache:
    """The producer's opened IPC handles, kept until its blob's version changes.

    ``get(version, open_blob)`` returns what ``open_blob()`` returned for this version,
    calling it only when ``version`` differs from the last one (a new producer); each call
    adds the number of handles it opened (its result's ``handle_count``) to
    :attr:`opens`. Opening a CUDA IPC handle costs far more than using one, so in steady
    state :attr:`opens` does not move.
    """

    def __init__(self) -> None:
        self.version = -1
        self.value: Any = None
        self.opens = 0

    def get(self, version: int, open_blob: Any) -> Any:
        if version != self.version:
            value, count = open_blob()
            self.value, self.version = value, version
            self.opens += int(count)
        return self.value


class CudaRing:
    """A ring of device-memory frame slots with :class:`ShmRing`'s interface."""

    def __init__(self, meta: ShmRing, handle: CudaRingHandle) -> None:
        self._meta = meta
        self._handle = handle
        self._pool: Any = None
        self._ready: list[Any] = []
        self._released: dict[tuple[int, int], list[Any]] = {}  # (reader index, token)
        #: CUDA IPC handles this producer opened (readers' events): once per registration.
        self.handle_opens = 0

    @classmethod
    def create(
        cls,
        name: str,
        *,
        slots: int,
        shape: tuple[int, ...] | list[int],
        dtype: str = "uint8",
        policy: Policy = "latest",
        max_consumers: int = 4,
        device: int | None = None,
    ) -> CudaRing:
        """Create the meta ring; device memory is allocated by the producer on first write."""
        meta = ShmRing.create(
            name,
            slots=slots,
            shape=(1,),
            policy=policy,
            max_consumers=max_consumers,
            aux_bytes=_AUX_BYTES,
        )
        return cls(meta, CudaRingHandle(meta.handle, tuple(int(d) for d in shape), dtype, device))

    @classmethod
    def attach(cls, handle: CudaRingHandle) -> CudaRing:
        return cls(ShmRing.attach(handle.meta), handle)

    def __reduce__(self) -> tuple[Any, ...]:
        return (CudaRing.attach, (self._handle,))

    @property
    def handle(self) -> CudaRingHandle:
        return self._handle

    @property
    def meta(self) -> ShmRing:
        """The meta ring: sequencing, policies and liveness, and the CUDA IPC handles."""
        return self._meta

    @property
    def name(self) -> str:
        return self._meta.name

    @property
    def slots(self) -> int:
        return self._meta.slots

    @property
    def shape(self) -> tuple[int, ...]:
        return self._handle.shape

    @property
    def policy(self) -> Policy:
        return self._meta.policy

    def stats(self) -> RingStats:
        return self._meta.stats()

    def close(self) -> None:
        self._meta.close()
        self._pool, self._ready, self._released = None, [], {}

    def unlink(self) -> None:
        self._meta.unlink()

    @staticmethod
    def unlink_name(name: str) -> bool:
        return ShmRing.unlink_name(name)

    def __enter__(self) -> CudaRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
    ) -> int:
        """Copy a tensor (any device) or a numpy array into a slot, on the current stream.

        A device tensor never leaves the device (a device-to-device copy). ``pts`` is the
        frame's presentation time, as for :meth:`ShmRing.write`.
        """
        h = self._handle
        if not type(frame).__module__.startswith("torch"):
            frame = _torch().from_numpy(frame)  # a host array: copied up, synchronously
        if tuple(frame.shape) != h.shape or str(frame.dtype).removeprefix("torch.") != h.dtype:
            raise RingError(
                f"ring {self.name!r} holds {h.shape} {h.dtype} frames; "
                f"got {tuple(frame.shape)} {frame.dtype}"
            )
        with self.reserve(
            timeout, frame_id=frame_id, capture_ts=capture_ts, session_id=session_id, pts=pts
        ) as slot:
            slot.array.copy_(frame, non_blocking=True)
        return int(slot.seq)

    @contextlib.contextmanager
    def reserve(
        self,
        timeout: float | None = None,
        *,
        frame_id: int | None = None,
        capture_ts: int | None = None,
        session_id: int = 0,
        pts: int | None = None,
    ) -> Iterator[Any]:
        """Reserve a slot; ``slot.array`` is a device tensor to render into on the current
        stream. The slot is published (after a "ready" event) when the block exits."""
        with self._meta.reserve(
            timeout, frame_id=frame_id, capture_ts=capture_ts, session_id=session_id
        ) as ws:
            ws.pts = pts
            torch = _torch()
            self._ensure_pool(torch)
            stream = torch.cuda.current_stream(self._pool.device)
            for events in self._reader_events():
                stream.wait_event(events[ws.slot])  # readers' pending work on this slot
            ws.array = self._pool[ws.slot]
            yield ws
            self._ready[ws.slot].record(stream)

    def _ensure_pool(self, torch: Any) -> None:
        if self._pool is not None:
            return
        from torch.multiprocessing import reductions

        reduce_tensor: Any = reductions.reduce_tensor  # unannotated in torch

        device = torch.device(
            "cuda",
            torch.cuda.current_device() if self._handle.device is None else self._handle.device,
        )
        dtype = getattr(torch, self._handle.dtype)
        with torch.cuda.device(device):
            self._pool = torch.empty((self.slots, *self._handle.shape), dtype=dtype, device=device)
            self._ready = [torch.cuda.Event(interprocess=True) for _ in range(self.slots)]
        blob = {
            "generation": self._meta.segment.producer_generation,
            "device": device.index,
            "pool": reduce_tensor(self._pool),
            "ready": [bytes(e.ipc_handle()) for e in self._ready],
        }
        self._meta.segment.aux_write(0, pickle.dumps(blob))

    def _reader_events(self) -> list[list[Any]]:
        """Every registered reader's "released" events, opened once per registration."""
        torch = _torch()
        segment = self._meta.segment
        out = []
        for key in segment.registrations():  # (index, token) of each registered reader
            index = key[0]
            events = self._released.get(key)
            if events is None:
                _, payload = segment.aux_read(1 + index)
                if not payload:
                    continue
                blob = pickle.loads(payload)
                if blob["token"] != key[1]:
                    continue  # not yet published: it has read nothing, so nothing to wait for
                events = [
                    torch.cuda.Event.from_ipc_handle(blob["device"], h) for h in blob["released"]
                ]
                self._released[key] = events
                self.handle_opens += len(events)
            out.append(events)
        return out

    # -- consumers -----------------------------------------------------------------------

    def reader(self) -> CudaReader:
        return CudaReader(self)


class CudaReader:
    """A CudaRing consumer; frames are device tensors the current stream may use at once."""

    def __init__(self, ring: CudaRing) -> None:
        torch = _torch()
        self._ring = ring
        self._meta = ring.meta.reader()
        self._frame: CudaFrame | None = None
        self._handles = HandleCache()
        self._pool: Any = None
        self._ready: list[Any] = []
        device = torch.cuda.current_device() if ring.handle.device is None else ring.handle.device
        with torch.cuda.device(device):
            self._released = [torch.cuda.Event(interprocess=True) for _ in range(ring.slots)]
        blob = {
            "token": self._meta.token,
            "device": device,
            "released": [bytes(e.ipc_handle()) for e in self._released],
        }
        ring.meta.segment.aux_write(1 + self._meta.index, pickle.dumps(blob))

    @property
    def dropped(self) -> int:
        return self._meta.dropped

    @property
    def handle_opens(self) -> int:
        """CUDA IPC handles opened (the pool and each slot's event): once per producer,
        never per frame; the bench checks it stays put in steady state."""
        return self._handles.opens

    @property
    def frame(self) -> CudaFrame | None:
        """The frame this reader holds (the last one read and not yet released)."""
        return self._frame

    def read(self, timeout: float | None = None) -> CudaFrame | None:
        """Like :meth:`Reader.read`; the returned tensor is ordered after the producer's
        write on the current stream."""
        self.release()
        meta = self._meta.read(timeout)
        if meta is None:
            return None
        torch = _torch()
        self._open(torch)
        torch.cuda.current_stream(self._pool.device).wait_event(self._ready[meta.slot])
        self._frame = CudaFrame(self, meta, self._pool[meta.slot])
        return self._frame

    def _open(self, torch: Any) -> None:
        """(Re)open the producer's pool and events when its blob changes (a new producer)."""
        segment = self._ring.meta.segment

        def open_blob() -> tuple[tuple[Any, list[Any]], int]:
            _, payload = segment.aux_read(0)
            blob = pickle.loads(payload)
            rebuild, args = blob["pool"]
            ready = [torch.cuda.Event.from_ipc_handle(blob["device"], h) for h in blob["ready"]]
            return (rebuild(*args), ready), 1 + len(ready)

        self._pool, self._ready = self._handles.get(segment.aux_version(0), open_blob)

    def release(self) -> None:
        frame = self._frame
        if frame is None:
            return
        self._frame = None
        torch = _torch()
        self._released[frame.slot].record(torch.cuda.current_stream(self._pool.device))
        frame.meta.release()

    def close(self) -> None:
        if self._frame is not None:
            self.release()
        self._meta.close()

    def __enter__(self) -> CudaReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class RingHandles:
    """The handles of a pipeline's rings, as each worker process is given them (picklable).

    ``output`` is a :class:`CudaRingHandle` on the GPU path (open it with
    :func:`attach_ring`); the others are always shared memory."""

    input: RingHandle
    output: RingHandle | CudaRingHandle
    audio_in: RingHandle | None = None  # audio.input: the clients' sound, to the model
    audio_out: RingHandle | None = None  # audio.output: the model's sound, to the viewers

    @classmethod
    def of(cls, rings: Mapping[str, ShmRing | CudaRing]) -> RingHandles:
        """The handles of the rings the supervisor made, by name (``input``, ``output``
        and, with sound, ``audio_in``/``audio_out``)."""

        def shm(name: str) -> RingHandle | None:
            ring = rings.get(name)
            if ring is not None and not isinstance(ring, ShmRing):
                raise RingError(f"ring {name!r}: only the output ring may be a CudaRing")
            return ring.handle if ring is not None else None

        input_handle = shm("input")
        if input_handle is None or "output" not in rings:
            raise RingError(f"a pipeline needs an input and an output ring; found "
                            f"{', '.join(rings) or 'none'}")
        return cls(input=input_handle, output=rings["output"].handle,
                   audio_in=shm("audio_in"), audio_out=shm("audio_out"))

    def shm_output(self) -> RingHandle:
        """``output`` for a reader of shared memory only (the file sink: a file run's
        output ring stays in shared memory)."""
        if isinstance(self.output, CudaRingHandle):
            raise RingError(f"ring {self.output.meta.name!r} is a CudaRing; this worker reads "
                            "shared memory only")
        return self.output


def attach_ring(handle: RingHandle | CudaRingHandle) -> ShmRing | CudaRing:
    """The ring ``handle`` names, attached: a :class:`CudaRing` for a
    :class:`CudaRingHandle` (the GPU path's output ring), else a :class:`ShmRing`."""
    return CudaRing.attach(handle) if isinstance(handle, CudaRingHandle) else ShmRing.attach(handle)
