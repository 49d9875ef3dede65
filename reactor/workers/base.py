"""What every worker process shares: its context, logging, parent watch and link.

A worker process runs :func:`reactor.workers.entry.run_worker`, which sets the process up
with the helpers here, connects its :class:`WorkerLink`, and calls the worker's entry
function with a :class:`WorkerContext`. The worker object that entry makes is a
:class:`Worker`: it takes the supervisor's messages and reports its stats, through
``ctx.attach(worker)``. Everything a worker does happens inside one ``try``: any exception
is logged, reported to the supervisor as ``fatal``, and the process exits non-zero.
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reactor.config import Config
from reactor.control.link import WorkerLink
from reactor.control.rundir import RunDir
from reactor.proto import worker_pb2 as wpb

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
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


class Worker(Protocol):
    """A worker object: what its link hands it and what its heartbeats carry."""

    def on_message(self, msg: wpb.ToWorker) -> None:
        """A message from the supervisor, on the link thread: hand it on, never block."""

    def stats(self) -> wpb.WorkerStats:
        """The counters and latencies for the next heartbeat."""


@dataclass
class WorkerContext:
    """What a worker's entry function receives; ``link`` is already connected."""

    name: str
    config: Config
    run_dir: RunDir
    rings: dict[str, Any]
    link: WorkerLink
    extra: dict[str, Any] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def attach(self, worker: Worker) -> WorkerLink:
        """Route the supervisor's messages to ``worker`` and send its stats from now on.

        Session events also set the session this process's log records carry."""

        def on_message(msg: wpb.ToWorker) -> None:
            if msg.WhichOneof("body") == "event":
                kind = msg.event.kind
                if kind == wpb.SessionEvent.STARTED:
                    set_log_session(msg.event.session_id)
                elif kind in (wpb.SessionEvent.ENDED, wpb.SessionEvent.ERROR):
                    set_log_session(None)
            worker.on_message(msg)

        self.link.attach(on_message, worker.stats)
        return self.link


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


#: The collector's thresholds in the daemon's processes (CPython's default: 700, 10, 10).
#: Streaming allocates and frees at a steady rate, so in steady state the collector does
#: not run at all (egress with 32 viewers: no collection in 20 s); what triggers it is
#: churn, viewers joining and leaving, whose peer connections die in reference cycles.
#: Measured in egress (32 viewers, 20 joins and leaves, CPU time in the collector): the
#: default thresholds ran 45 collections for 110 ms, one of them a full one of 44 ms;
#: these ran 3 for 21 ms, the longest 10 ms (most of it freeing the dead connections).
GC_THRESHOLDS = (10_000, 20, 20)


def tune_gc() -> None:
    """Set :data:`GC_THRESHOLDS` (at process start)."""
    gc.set_threshold(*GC_THRESHOLDS)


def freeze_gc() -> None:
    """Call once start-up is over (imports, the model's weights, the codecs): collect what
    start-up left, then move every object alive now into the permanent generation.

    A full (oldest-generation) collection walks every object the collector tracks; in a
    worker that is a hundred thousand or more from imports alone (aiortc, PyAV, numpy,
    torch), which made one full collection take 35-60 ms, two frame intervals of a
    30 fps stream. Frozen objects are never walked again, so a later full collection
    only walks what the process made since it became ready."""
    gc.collect()
    gc.freeze()


def die_with_parent(parent_pid: int) -> None:
    """Make the kernel kill us when the supervisor dies, even by ``kill -9``.

    PR_SET_PDEATHSIG covers the death that happens after this call; the getppid check
    covers a parent that died before it.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:  # belt and braces, for platforms without prctl
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
