"""SIGTERM and SIGINT for the supervisor: a flag and a wake-up, nothing more.

The handlers only set a flag; the signal module also writes to a socket pair, whose read
end the supervisor polls beside its sockets, so a signal interrupts the poll at once.
Leaving the ``with`` block restores the previous handlers and wake-up fd, always.

With ``drain_on_sigterm`` (``session.drain_timeout_s`` is set), SIGTERM asks for a drain
(:attr:`StopSignals.drain_requested`) rather than a stop; SIGINT (Ctrl+C) always stops.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

#: What ``signal.getsignal`` returns and ``signal.signal`` takes back.
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class StopSignals:
    def __init__(self, *, drain_on_sigterm: bool = False) -> None:
        #: Stop now.
        self.received = False
        #: SIGTERM with ``drain_on_sigterm``: drain (the supervisor clears it once seen).
        self.drain_requested = False
        self.drain_on_sigterm = drain_on_sigterm
        self._read: socket.socket | None = None
        self._write: socket.socket | None = None
        self._old_handlers: dict[signal.Signals, Handler] = {}
        self._old_wakeup = -1

    def fileno(self) -> int:
        """The fd that becomes readable when a signal arrives (inside the ``with``)."""
        assert self._read is not None, "StopSignals is used outside its with block"
        return self._read.fileno()

    def drain(self) -> None:
        if self._read is None:
            return
        with contextlib.suppress(OSError):
            self._read.recv(4096)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only a flag; the wake-up fd interrupts the poll.
        if signum == signal.SIGTERM and self.drain_on_sigterm:
            self.drain_requested = True
        else:
            self.received = True

    def __enter__(self) -> StopSignals:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._old_handlers = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        self._old_wakeup = signal.set_wakeup_fd(self._write.fileno())
        for s in STOP_SIGNALS:
            signal.signal(s, self._on_signal)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        signal.set_wakeup_fd(self._old_wakeup)
        for s, h in self._old_handlers.items():
            signal.signal(s, h)
        for sock in (self._read, self._write):
            if sock is not None:
                sock.close()
        self._read = self._write = None
