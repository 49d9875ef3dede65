"""reactor: turn a real-time video model into a live, interactive stream.

A model is one class::

    from reactor import VideoModel, Session, command, Field

    class Brightness(VideoModel):
        @command
        def set_gain(self, gain: float = Field(1.0, ge=0.0, le=4.0)) -> None:
            self.gain = gain
        ...
"""

from __future__ import annotations

from reactor.errors import (
    CommandError,
    ConfigError,
    FrameError,
    ModelLoadError,
    ReactorError,
    SessionStopped,
)
from reactor.model import Field, Session, VideoModel, command

__version__ = "0.1.0"

__all__ = [
    "CommandError",
    "ConfigError",
    "Field",
    "FrameError",
    "ModelLoadError",
    "ReactorError",
    "Session",
    "SessionStopped",
    "VideoModel",
    "__version__",
    "command",
]
