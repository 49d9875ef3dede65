"""RGB -> I420 with torch ops, on whatever device the frame is on (a GPU in egress).

The same picture as :func:`reactor.media.convert.rgb_to_frame` (libswscale), within one
level: the same matrix and range (:data:`reactor.media.encoder.COLOUR`, BT.601 limited
range for both codecs), and the same chroma filter, measured from swscale's output (a
least-squares fit of its Cb against the full-resolution Cb of random frames): each chroma
sample is the mean of its two columns and the ``[1, 3, 3, 1] / 8`` weighting of the four
rows around it (edge rows repeated). A plain 2x2 mean differs from swscale by up to 26
levels on noise.

:func:`rgb_to_i420` returns one ``(H * 3 // 2, W)`` uint8 tensor holding the Y, U and V
planes back to back: half the bytes of RGB, copied to the host in one transfer (into
pinned memory by :class:`HostPlanes`) and wrapped by :func:`i420_frame` as the
``yuv420p`` ``av.VideoFrame`` an encoder takes, without another copy.

torch is imported by the caller (the tensor's own module), so this imports without it.
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np
import numpy.typing as npt
from av.video.frame import VideoFrame
from av.video.reformatter import ColorRange

from reactor.media.convert import BT601, YuvColour, rgb_to_frame, tag_frame

#: (Kr, Kb) of each matrix by :attr:`YuvColour.name`.
_KRKB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


def yuv_matrix(colour: YuvColour) -> tuple[list[list[float]], list[float]]:
    """The 3x3 matrix and offsets taking RGB in 0..255 to ``colour``'s Y, Cb, Cr."""
    kr, kb = _KRKB[colour.name]
    kg = 1.0 - kr - kb
    limited = colour.range != ColorRange.JPEG
    ys, cs = (219.0 / 255.0, 224.0 / 255.0) if limited else (1.0, 1.0)
    y = [kr * ys, kg * ys, kb * ys]
    cb = [-kr / (2 - 2 * kb) * cs, -kg / (2 - 2 * kb) * cs, 0.5 * cs]
    cr = [0.5 * cs, -kg / (2 - 2 * kr) * cs, -kb / (2 - 2 * kr) * cs]
    return [y, cb, cr], [16.0 if limited else 0.0, 128.0, 128.0]


_MATRICES: dict[tuple[str, int, str], Any] = {}


def _matrix(colour: YuvColour, device: Any) -> Any:
    """``colour``'s matrix as a tensor on ``device``, made once (a per-frame
    ``torch.tensor`` would be a host-to-device copy every frame)."""
    import torch

    key = (colour.name, int(colour.range), str(device))
    mat = _MATRICES.get(key)
    if mat is None:
        mat = _MATRICES[key] = torch.tensor(yuv_matrix(colour)[0], dtype=torch.float32,
                                            device=device)
    return mat


def rgb_to_i420(rgb: Any, colour: YuvColour = BT601) -> Any:
    """Convert a torch uint8 ``(H, W, 3)`` RGB tensor to I420 planes on its own device.

    ``H`` must be divisible by 4. Returns a uint8 tensor of shape ``(H * 3 // 2, W)``:
    Y (``H`` rows), then U and V (``H // 4`` rows each, every row two chroma rows of
    ``W // 2``), the layout of a ``yuv420p`` buffer. Runs on the current stream;
    nothing waits for the device.
    """
    import torch

    h, w = int(rgb.shape[0]), int(rgb.shape[1])
    _, off = yuv_matrix(colour)
    mat = _matrix(colour, rgb.device)
    x = rgb.to(torch.float32)
    y = x @ mat[0] + off[0]  # (H, W)
    c = x @ mat[1:].T  # (H, W, 2): Cb, Cr without the offset
    c = (c[:, 0::2] + c[:, 1::2]) * 0.5  # columns: the pair's mean
    c = torch.cat([c[:1], c, c[-1:]])  # rows: [1, 3, 3, 1] / 8, the edge rows repeated
    c = (c[0:-2:2] + 3.0 * c[1:-1:2] + 3.0 * c[2::2] + c[3::2]) * 0.125 + 128.0
    out = torch.empty((h * 3 // 2, w), dtype=torch.uint8, device=rgb.device)
    out[:h] = y.round_().clamp_(0, 255).to(torch.uint8)
    chroma = c.round_().clamp_(0, 255).to(torch.uint8)  # (H/2, W/2, 2)
    if h % 4:
        raise ValueError(f"I420 planes in whole rows need a height divisible by 4, found {h}")
    quarter = h // 4
    out[h:h + quarter] = chroma[..., 0].reshape(quarter, w)
    out[h + quarter:] = chroma[..., 1].reshape(quarter, w)
    return out


def i420_frame(
    buf: npt.NDArray[np.uint8], pts: int | None, colour: YuvColour = BT601
) -> av.VideoFrame:
    """Wrap a host ``(H * 3 // 2, W)`` I420 buffer as a tagged ``yuv420p`` frame.

    The frame shares ``buf``'s memory: keep ``buf`` unchanged until it is encoded.
    """
    return tag_frame(VideoFrame.from_numpy_buffer(buf, format="yuv420p"), colour, pts)


class HostPlanes:
    """Device I420 planes -> pinned host memory -> an ``av.VideoFrame``, per frame.

    One pinned buffer, allocated once: the device-to-host copy is asynchronous on the
    current stream and the caller's thread waits for it alone (an event), not for the
    whole device.
    """

    def __init__(self, width: int, height: int, colour: YuvColour = BT601,
                 pin: bool = True) -> None:
        import torch

        self.colour = colour
        self._torch = torch
        self.host = torch.empty((height * 3 // 2, width), dtype=torch.uint8,
                                pin_memory=pin)
        self._event: Any = None

    def frame(self, rgb: Any, pts: int | None) -> av.VideoFrame:
        """Convert device RGB ``(H, W, 3)`` and bring the planes to the host as a frame."""
        torch = self._torch
        if rgb.shape[0] % 4:  # the planes do not fall on whole rows: swscale on the host
            return rgb_to_frame(np.ascontiguousarray(rgb.cpu().numpy()), pts,
                                colour=self.colour)
        planes = rgb_to_i420(rgb, self.colour)
        self.host.copy_(planes, non_blocking=planes.is_cuda)
        if planes.is_cuda:
            if self._event is None:
                self._event = torch.cuda.Event()
            self._event.record(torch.cuda.current_stream(planes.device))
            self._event.synchronize()
        buf: npt.NDArray[np.uint8] = self.host.numpy()
        return i420_frame(buf, pts, self.colour)
