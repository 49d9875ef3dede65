"""reactor: turn a real-time video model into a live, interactive stream.

A model is one class, a subclass of `VideoModel`; its `@command` methods become typed
commands clients can call, and `Field` (pydantic's) adds constraints to their arguments:

```python
from reactor import Field, Session, VideoModel, command

class Brightness(VideoModel):
    def load(self, config: dict) -> None:
        self.gain = 1.0

    @command
    def set_gain(self, gain: float = Field(1.0, ge=0.0, le=4.0)) -> None:
        # the docstring of a command becomes its description
        self.gain = gain

    def start_session(self, session: Session) -> None:
        for frame in session.inputs():
            session.emit((frame * self.gain).clip(0, 255).astype("uint8"))
```

The errors reactor raises are exported here too; all derive from `ReactorError`.
"""

from __future__ import annotations

from reactor.errors import (
    AudioError,
    CommandError,
    ConfigError,
    FrameError,
    ModelLoadError,
    ReactorError,
    SessionStopped,
)
from reactor.model import Field, Session, VideoModel, command
from reactor.model.audio import AudioChunk

__version__ = "0.1.0"
#: The name reactor is installed by (`pip install reactor-live`); the import package and the
#: command are both `reactor`.
__distribution__ = "reactor-live"

__all__ = [
    "AudioChunk",
    "AudioError",
    "CommandError",
    "ConfigError",
    "Field",
    "FrameError",
    "ModelLoadError",
    "ReactorError",
    "Session",
    "SessionStopped",
    "VideoModel",
    "__distribution__",
    "__version__",
    "command",
]
