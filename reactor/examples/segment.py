"""A real model: MediaPipe's selfie segmentation blurs or replaces the camera's background.

Needs ``pip install "reactor-live[segment]"``: MediaPipe 0.10.x, whose wheel carries the
model's weights (``selfie_segmentation*.tflite``), so nothing is downloaded at run time,
and OpenCV (a MediaPipe dependency) for the blur and the blend. MediaPipe 0.10.x pins
``protobuf<5``, which reactor supports (from 4.21), and has wheels for Python 3.11 and
3.12 only.

Video to video (``configs/segment.yaml``): send your camera over WHIP, watch it over WHEP
with the background blurred, filled with a colour, or shown as the mask. Each frame is
segmented; ``set_background`` and ``set_blur`` take effect on the next frame.
"""

from __future__ import annotations

import sys
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from reactor import Field, ModelLoadError, Session, VideoModel, command

INSTALL = 'pip install "reactor-live[segment]"'

#: ``model`` arg: MediaPipe's two selfie models (``model_selection`` 0 and 1). The landscape
#: one takes 256x144 (a camera's 16:9) and is a little faster; general takes 256x256.
MODELS = {"general": 0, "landscape": 1}

Mode = Literal["blur", "color", "mask", "off"]


class SelfieSegment(VideoModel):
    """Keeps the person, blurs or replaces the background (MediaPipe selfie segmentation)."""

    def load(self, config: dict[str, Any]) -> None:
        try:
            import cv2
            from mediapipe.python.solutions import selfie_segmentation
        except ImportError as exc:
            # MediaPipe's last releases with the solution and its weights predate 3.13.
            python = (" on Python 3.11 or 3.12 (MediaPipe 0.10.21, the last with these "
                      "weights, has no 3.13 build)" if sys.version_info >= (3, 13) else "")
            raise ModelLoadError(
                f"SelfieSegment needs MediaPipe 0.10 and OpenCV ({exc}): {INSTALL}{python}"
            ) from None
        model = config.get("model", "landscape")
        if model not in MODELS:
            raise ModelLoadError(
                f"model.args.model: expected one of {', '.join(MODELS)}, found {model!r}"
            )
        self.cv2 = cv2
        self.segmenter = selfie_segmentation.SelfieSegmentation(model_selection=MODELS[model])
        self.mode: str = str(config.get("background", "blur"))
        self.blur = int(config.get("blur", 12))
        self.color = (0, 177, 64)
        #: The last frame's mask: float32 (H, W), 1 where the person is (for tests and
        #: subclasses; replaced each frame).
        self.mask: npt.NDArray[np.float32] | None = None

    @command
    def set_background(
        self,
        mode: Mode = "blur",
        r: int = Field(0, ge=0, le=255),
        g: int = Field(177, ge=0, le=255),
        b: int = Field(64, ge=0, le=255),
    ) -> None:
        """Blur the background, fill it with the colour (r, g, b), show the mask (white on
        the person), or turn the effect off."""
        self.mode, self.color = mode, (r, g, b)

    @command
    def set_blur(self, strength: int = Field(12, ge=1, le=50)) -> None:
        """How much to blur the background: the Gaussian's sigma, in pixels of a picture
        an eighth of the frame's size (12: a face in the background is a blur)."""
        self.blur = strength

    def start_session(self, session: Session) -> None:
        cv2 = self.cv2
        h, w = session.height, session.width
        # Buffers made once per session: the loop allocates only what MediaPipe returns.
        out = np.empty((h, w, 3), np.uint8)
        background = np.empty((h, w, 3), np.uint8)
        filled: tuple[int, int, int] | None = None  # the colour `background` holds, if any
        gray = np.empty((h, w), np.uint8)
        inverse = np.empty((h, w), np.float32)
        small = np.empty((max(1, h // 8), max(1, w // 8), 3), np.uint8)
        for frame in session.inputs():
            if self.mode == "off":
                session.emit(frame)
                continue
            mask = self.segmenter.process(frame).segmentation_mask  # float32 (h, w) in [0, 1]
            self.mask = mask
            if self.mode == "mask":
                cv2.convertScaleAbs(mask, dst=gray, alpha=255.0)
                session.emit(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB, dst=out))
                continue
            if self.mode == "blur":
                # Blurred at an eighth of the size, then scaled back: the look of a blur
                # eight times as wide at full size, for a fraction of the work.
                cv2.resize(frame, (small.shape[1], small.shape[0]), dst=small,
                           interpolation=cv2.INTER_AREA)
                cv2.GaussianBlur(small, (0, 0), self.blur, dst=small)
                cv2.resize(small, (w, h), dst=background, interpolation=cv2.INTER_LINEAR)
                filled = None
            elif filled != self.color:  # filling 720p takes milliseconds: only on a change
                background[:] = filled = self.color
            np.subtract(1.0, mask, out=inverse)
            # out = frame * mask + background * (1 - mask), in one pass
            cv2.blendLinear(frame, background, mask, inverse, dst=out)
            session.emit(out)
