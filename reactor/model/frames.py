"""Converting what a model emits into the pipeline's frame format.

The pipeline carries uint8 RGB frames, height x width x 3. ``emit()`` also takes float
frames, channels first, in [0, 1]; blocks of frames with a leading time axis; and torch
tensors on any device. Everything else is refused with an error naming what was expected
and what was found.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reactor.errors import FrameError


def _is_torch(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def expected_text(height: int, width: int) -> str:
    return (
        f"a uint8 RGB frame of shape ({height}, {width}, 3), a float frame of shape "
        f"(3, {height}, {width}) in [0, 1], or a block of either with a leading time axis"
    )


def _describe(obj: Any) -> str:
    shape = tuple(getattr(obj, "shape", ()))
    dtype = getattr(obj, "dtype", type(obj).__name__)
    return f"shape {shape} dtype {dtype}"


def to_pipeline_frames(obj: Any, height: int, width: int) -> np.ndarray:
    """Return ``obj`` as a ``(T, height, width, 3)`` uint8 array (a view when possible).

    Raises `FrameError` for anything else, naming the expected and found forms.
    """
    if _is_torch(obj):
        return _from_torch(obj, height, width)
    if not isinstance(obj, np.ndarray):
        raise FrameError(
            f"emit() expected {expected_text(height, width)}; found {type(obj).__name__}"
        )
    arr = obj
    hwc = (height, width, 3)
    chw = (3, height, width)
    if arr.dtype == np.uint8:
        if arr.shape == hwc:
            arr = arr[None]
        if arr.ndim == 4 and arr.shape[1:] == hwc:
            return np.ascontiguousarray(arr)
    elif arr.dtype.kind == "f":
        if arr.shape == chw:
            arr = arr[None]
        if arr.ndim == 4 and arr.shape[1:] == chw:
            out = np.clip(arr.transpose(0, 2, 3, 1), 0.0, 1.0) * 255.0
            return np.rint(out).astype(np.uint8)
    raise FrameError(f"emit() expected {expected_text(height, width)}; found {_describe(arr)}")


def is_cuda(obj: Any) -> bool:
    """Whether ``obj`` is a torch tensor in CUDA device memory."""
    return _is_torch(obj) and bool(getattr(obj, "is_cuda", False))


def device_frames(t: Any, height: int, width: int) -> Any:
    """A torch tensor ``emit()`` accepts, as a ``(T, height, width, 3)`` uint8 tensor on
    its own device (float CHW in [0, 1] converted there); `FrameError` otherwise."""
    import torch

    t = t.detach()
    hwc, chw, shape = (height, width, 3), (3, height, width), tuple(t.shape)
    if t.dtype == torch.uint8 and (shape == hwc or (len(shape) == 4 and shape[1:] == hwc)):
        return t if len(shape) == 4 else t[None]
    if t.is_floating_point() and (shape == chw or (len(shape) == 4 and shape[1:] == chw)):
        block = t if len(shape) == 4 else t[None]
        return (block.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1)
    raise FrameError(f"emit() expected {expected_text(height, width)}; found torch tensor "
                     f"shape {shape} dtype {t.dtype}")


def _from_torch(t: Any, height: int, width: int) -> np.ndarray:
    # Converted on the tensor's own device, so only uint8 bytes cross to the host.
    return np.ascontiguousarray(device_frames(t, height, width).cpu().numpy())
