"""A process's logging: its own file in the run directory, text or JSON lines, and the
session its records carry.

Every process of the daemon configures its logging again (spawn starts fresh): the
supervisor through :mod:`reactor.daemon.launcher`, each worker in
:func:`reactor.workers.entry.run_worker`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)-7s {process}[%(process)d] %(name)s: %(message)s"

#: The session this process works for now, stamped on its log records (``session``).
_log_session: str | None = None


def set_log_session(session_id: str | None) -> None:
    """Stamp this process's log records with ``session_id`` from now on (None: none)."""
    global _log_session
    _log_session = session_id or None


class _SessionStamp(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.session = _log_session
        return True


class JsonFormatter(logging.Formatter):
    """``log.format: json``: one JSON object a line for log shippers: ``time`` (ISO 8601,
    UTC, milliseconds), ``level``, ``worker`` (the process: supervisor, ingress, ...),
    ``pid``, ``logger``, ``session`` (or null) and ``message``; ``exception`` holds the
    traceback when there is one."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "worker": self.process,
            "pid": record.process,
            "logger": record.name,
            "session": getattr(record, "session", None),
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def setup_logging(
    log_file: Path | None, process: str, *, level: int | str = logging.INFO,
    console: bool = False, format: str = "text",
) -> None:
    """Configure this process's logging: its own file in the run directory, and the
    terminal too in the foreground. Called again in every process (spawn starts fresh).

    ``level`` is a number or a name (``"debug"``, ``"info"``, ...: the config's
    ``log.level``). The WebRTC stack's loggers stay at WARNING unless the level is DEBUG,
    where their ICE and DTLS steps are what the user asked to see. ``format`` is the
    config's ``log.format``: ``text`` lines, or ``json`` (:class:`JsonFormatter`)."""
    if isinstance(level, str):
        level = logging.getLevelNamesMapping()[level.upper()]
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = (JsonFormatter(process) if format == "json"
           else logging.Formatter(LOG_FORMAT.format(process=process)))
    handlers: list[logging.Handler] = []
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    if console:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(fmt)
        handler.addFilter(_SessionStamp())
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level <= logging.DEBUG
                                          else max(level, logging.WARNING))
