"""Models with sound for the file-run tests (imported by the daemon's workers, as
``sound_models:...`` with :func:`tests.support.daemon.models_env`)."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from reactor import Session, VideoModel
from reactor.model.audio import AudioChunk


class SoundThrough(VideoModel):
    """Every input frame goes out as it came, with the input's sound of that frame's time.

    A thread collects the clients' sound; for the frame whose ``input_time`` is ``t`` the
    model emits the chunks whose ``time`` is before ``t + 1 / fps`` (waiting up to 0.2 s for
    them), so the sound comes out where it went in, paired by presentation time.
    """

    def start_session(self, session: Session) -> None:
        chunks: deque[AudioChunk] = deque()
        listener = threading.Thread(target=self._listen, args=(session, chunks), daemon=True)
        listener.start()
        frame_s = 1 / session.fps
        for frame in session.inputs():
            t = session.input_time
            assert t is not None
            deadline = time.monotonic() + 0.2
            while (not chunks or chunks[-1].time + 0.02 < t + frame_s) and \
                    time.monotonic() < deadline and not session.should_stop():
                time.sleep(0.002)
            due = []
            while chunks and chunks[0].time < t + frame_s:
                due.append(chunks.popleft())
            session.emit(frame, audio=np.concatenate(due) if due else None)
        listener.join(1.0)

    @staticmethod
    def _listen(session: Session, chunks: deque[AudioChunk]) -> None:
        for chunk in session.audio_inputs():
            chunks.append(chunk)
