"""A worker's recorder from the config: egress's ``egress.record`` and the file sink.

:mod:`reactor.media.recorder` takes plain values; the config is read here, in the one
module of the workers that imports it, so that a worker that records nothing (and the
supervisor, whose spawn target imports :mod:`reactor.workers.base`) loads no recorder.
"""

from __future__ import annotations

from pathlib import Path

from reactor.config import Config
from reactor.media.recorder import Recorder

__all__ = ["open_recorder"]


def open_recorder(config: Config, path: str | Path | None = None, *,
                  duration_s: float | None = None, encode: bool = True) -> Recorder:
    """A recorder for ``config``'s video (and, with ``audio.output``, its sound), to
    ``path`` or else ``egress.record``."""
    v, a = config.video, config.audio
    target = path or config.egress.record
    if target is None:
        raise ValueError("open_recorder: no path and no egress.record")
    return Recorder(target, v.width, v.height, v.fps, config.egress.bitrate_kbps,
                    audio=(a.sample_rate, a.channels) if a.output else None,
                    duration_s=duration_s, encode=encode)
