"""Models for the GPU path's daemon tests: frames made and read on a CUDA device."""

from __future__ import annotations

from typing import Any

from reactor import Field, Session, VideoModel, command


class CudaSolid(VideoModel):
    """A generative model: one colour, rendered as a CUDA tensor every frame."""

    def load(self, config: dict[str, Any]) -> None:
        import torch

        self.torch = torch
        self.rgb = (200, 40, 90)

    @command
    def set_color(self, r: int = Field(0, ge=0, le=255), g: int = Field(0, ge=0, le=255),
                  b: int = Field(0, ge=0, le=255)) -> None:
        self.rgb = (r, g, b)

    def start_session(self, session: Session) -> None:
        torch = self.torch
        while not session.should_stop():
            frame = torch.empty((session.height, session.width, 3), dtype=torch.uint8,
                                device="cuda")
            frame[...] = torch.tensor(self.rgb, dtype=torch.uint8, device="cuda")
            session.emit(frame)


class CudaEcho(VideoModel):
    """A filter that needs its input on the GPU (``device: cuda``) and echoes it."""

    def start_session(self, session: Session) -> None:
        import torch

        for frame in session.inputs():
            if not (isinstance(frame, torch.Tensor) and frame.is_cuda):
                raise TypeError(f"expected a CUDA tensor, got {type(frame).__name__}")
            session.emit(255 - frame)
