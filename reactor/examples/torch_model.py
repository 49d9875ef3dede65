"""A torch example: a learned-style colour mix and blur, on CPU or GPU.

Needs ``pip install "reactor-live[torch]"``. Frames arrive as uint8 HWC numpy (a CUDA tensor
with ``device: cuda``); the model works in float CHW on its device and emits float CHW in
[0, 1], which the runtime converts (on the GPU path, without leaving the device).
"""

from __future__ import annotations

from typing import Any

from reactor import Field, ModelLoadError, Session, VideoModel, command


class TorchStylize(VideoModel):
    """Mixes colour channels with a 3x3 matrix and blurs, with torch."""

    def load(self, config: dict[str, Any]) -> None:
        try:
            import torch
        except ImportError:
            raise ModelLoadError(
                'TorchStylize needs torch: pip install "reactor-live[torch]"'
            ) from None
        self.torch = torch
        device = config.get("device", "auto")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        # Stand-in for weights: a sepia-like channel mix and a 3x3 box blur.
        self.mix = torch.tensor(
            [[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]],
            device=self.device,
        )
        self.kernel = torch.full((3, 1, 3, 3), 1.0 / 9.0, device=self.device)
        self.strength = 1.0

    @command
    def set_strength(self, strength: float = Field(1.0, ge=0.0, le=1.0)) -> None:
        """How much of the effect to apply (0 = original picture)."""
        self.strength = strength

    def start_session(self, session: Session) -> None:
        torch = self.torch
        eye = torch.eye(3, device=self.device)
        with torch.inference_mode():
            for frame in session.inputs():
                # numpy, or with `device: cuda` already a tensor on the GPU
                x = frame if isinstance(frame, torch.Tensor) else torch.from_numpy(frame)
                x = x.to(self.device).permute(2, 0, 1).float() / 255.0
                m = self.strength * self.mix + (1.0 - self.strength) * eye
                y = torch.einsum("ij,jhw->ihw", m, x)
                if self.strength > 0:
                    y = torch.nn.functional.conv2d(y[None], self.kernel, padding=1, groups=3)[0]
                session.emit(y)
