"""Egress's reader of an output ring on the GPU: device frames in, encoder pictures out.

:class:`PlanesReader` wraps a :class:`~reactor.ipc.cuda_ring.CudaReader` with the reader
interface egress's loop uses (``read(timeout)``, ``close()``; frames with ``array``,
``pts``, ``enqueue_ts``, ``release()``). A frame's ``array`` is made on first use, so a
frame nobody watches costs nothing: the RGB slot is converted to I420 on the device
(:func:`reactor.media.gpu_colour.rgb_to_i420`), the planes (half the bytes of RGB) are
copied to pinned host memory, and ``array`` is the ``yuv420p`` ``av.VideoFrame`` every
encoder takes as it is (NVENC or libx264; see :meth:`reactor.media.encoder.Encoder.encode`).
The conversion is queued on this thread's stream after the ring's "ready" wait, and the
slot is released only after the copy finished, so the producer never overwrites a slot
that is still being read.
"""

from __future__ import annotations

import threading
from typing import Any

import av

from reactor.ipc.cuda_ring import CudaFrame, CudaReader, CudaRing
from reactor.media.convert import YuvColour
from reactor.media.encoder import COLOUR
from reactor.media.gpu_colour import HostPlanes


class PlanesFrame:
    """One output frame from the GPU; ``array`` is its encoder picture, made once."""

    def __init__(self, frame: CudaFrame, planes: HostPlanes) -> None:
        self._frame = frame
        self._planes = planes
        self._picture: av.VideoFrame | None = None
        self.pts, self.enqueue_ts = frame.pts, frame.enqueue_ts
        self.frame_id, self.session_id = frame.frame_id, frame.session_id
        self.capture_ts = frame.capture_ts

    @property
    def array(self) -> av.VideoFrame:
        if self._picture is None:
            self._picture = self._planes.frame(self._frame.array, self.pts)
        return self._picture

    @property
    def device_array(self) -> Any:
        """The RGB slot itself, a device tensor (valid until :meth:`release`)."""
        return self._frame.array

    def release(self) -> None:
        self._frame.release()


class PlanesReader:
    """A CudaRing reader whose frames' ``array`` is a host ``yuv420p`` picture."""

    def __init__(self, ring: CudaRing, colour: YuvColour = COLOUR["h264"]) -> None:
        self._device = ring.handle.device
        self._thread = 0
        self._pin_thread()
        self._reader: CudaReader = ring.reader()
        height, width = ring.shape[0], ring.shape[1]
        # One pinned buffer for every frame: one frame is in flight at a time.
        self._planes = HostPlanes(width, height, colour)

    @property
    def handle_opens(self) -> int:
        """CUDA IPC handles opened so far (see :attr:`CudaReader.handle_opens`)."""
        return self._reader.handle_opens

    @property
    def dropped(self) -> int:
        return self._reader.dropped

    def _pin_thread(self) -> None:
        """Make the ring's device this thread's current one (CUDA's is per thread), so
        this thread's CUDA work -- the pinned buffer's context among it -- is on that
        device only: a daemon on cuda:1 makes no context on cuda:0."""
        if self._device is None or self._thread == threading.get_ident():
            return
        import torch

        torch.cuda.set_device(self._device)
        self._thread = threading.get_ident()

    def read(self, timeout: float | None = None) -> PlanesFrame | None:
        self._pin_thread()  # egress reads on its reader thread, not the one that made us
        frame = self._reader.read(timeout)
        return None if frame is None else PlanesFrame(frame, self._planes)

    def close(self) -> None:
        self._reader.close()
