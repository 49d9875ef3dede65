"""Models that hear, for the WHIP-audio tests (imported by the daemon's workers as
``audio_models:...`` with :func:`tests.support.daemon.models_env`)."""

from __future__ import annotations

import contextlib
import threading

from reactor import Session, SessionStopped, VideoModel


class EchoAV(VideoModel):
    """The identity model: every input frame goes out as it came, and every 20 ms of the
    clients' sound goes out as it came (a thread of its own, so sound flows with no video
    and video with no sound)."""

    def start_session(self, session: Session) -> None:
        echo = threading.Thread(target=self._echo, args=(session,), daemon=True)
        echo.start()
        for frame in session.inputs():
            session.emit(frame)
        echo.join(1.0)

    @staticmethod
    def _echo(session: Session) -> None:
        with contextlib.suppress(SessionStopped):  # the session ended mid-chunk
            for chunk in session.audio_inputs():
                session.emit_audio(chunk)
