"""Models that hear, for the WHIP-audio tests (imported by the daemon's workers as
``audio_models:...`` with :func:`tests.support.daemon.models_env`)."""

from __future__ import annotations

import contextlib
import threading

import numpy as np

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


#: A beep starts at the first sample above this after QUIET_S below it.
BEEP_LEVEL, QUIET_S = 0.1, 0.3


class AVProbe(VideoModel):
    """Tells the clients (``session.send``) when the input's picture turns bright
    (``{"flash": t}``, its frame's ``input_time``) and when its sound starts a beep
    (``{"beep": t}``, the onset sample's time), both on the session clock."""

    def start_session(self, session: Session) -> None:
        ears = threading.Thread(target=self._listen, args=(session,), daemon=True)
        ears.start()
        bright = False
        for frame in session.inputs():
            now_bright = float(frame.mean()) > 128
            if now_bright and not bright:
                session.send({"flash": session.input_time})
            bright = now_bright
            session.emit(frame)
        ears.join(1.0)

    @staticmethod
    def _listen(session: Session) -> None:
        quiet = 0  # samples below BEEP_LEVEL so far
        for chunk in session.audio_inputs():
            loud = np.flatnonzero(np.abs(chunk[:, 0]) > BEEP_LEVEL)
            if len(loud) and quiet + int(loud[0]) >= QUIET_S * session.sample_rate:
                session.send({"beep": chunk.time + int(loud[0]) / session.sample_rate})
            quiet = len(chunk) - 1 - int(loud[-1]) if len(loud) else quiet + len(chunk)
