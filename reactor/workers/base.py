"""What every worker process shares: its entry point, logging, parent watch and link.

A worker is started by the supervisor with the ``multiprocess`` *spawn* context and runs
:func:`run_worker`, which sets up the process and calls the worker module's
``main(ctx)``. Everything a worker does happens inside one ``try``: any exception is
logged, reported to the supervisor as ``fatal``, and the process exits non-zero.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactor.config import Config
from reactor.control.link import WorkerLink
from reactor.control.rundir import RunDir
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
LOG_FORMAT = "%(asctime)s %(levelname)-7s {process}[%(process)d] %(name)s: %(message)s"


@dataclass
class WorkerContext:
    """What a worker's ``main`` receives."""

    name: str
    config: Config
    run_dir: RunDir
    rings: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    link: WorkerLink | None = None

    def connect(
        self,
        on_message: Any,
        stats: Any,
    ) -> WorkerLink:
        self.link = WorkerLink(
            self.name, self.run_dir.endpoint("workers"), on_message=on_message, stats=stats
        )
        self.link.start()
        logging.getLogger().addHandler(_LinkLogHandler(self.link, self.name))
        return self.link


class _LinkLogHandler(logging.Handler):
    """Forwards warnings and errors to the supervisor, for the monitor's log panel."""

    def __init__(self, link: WorkerLink, process: str) -> None:
        super().__init__(logging.WARNING)
        self._link = link
        self._process = process

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = tpb.LogLine(ts=record.created, process=self._process,
                               level=record.levelname, message=record.getMessage()[:500])
            self._link.send(wpb.FromWorker(log=line))
        except Exception:  # logging must never raise into the caller
            pass


def setup_logging(
    log_file: Path | None, process: str, *, level: int | str = logging.INFO,
    console: bool = False,
) -> None:
    """Configure this process's logging: its own file in the run directory, and the
    terminal too in the foreground. Called again in every process (spawn starts fresh).

    ``level`` is a number or a name (``"debug"``, ``"info"``, ...: the config's
    ``log.level``). The WebRTC stack's loggers stay at WARNING unless the level is DEBUG,
    where their ICE and DTLS steps are what the user asked to see."""
    if isinstance(level, str):
        level = logging.getLevelNamesMapping()[level.upper()]
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter(LOG_FORMAT.format(process=process))
    if log_file is not None:
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    if console:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        root.addHandler(sh)
    root.setLevel(level)
    for noisy in ("aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level <= logging.DEBUG
                                          else max(level, logging.WARNING))


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


def run_worker(
    name: str,
    config: Config,
    run_dir: str,
    rings: dict[str, Any],
    parent_pid: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """The spawn target of every worker process."""
    die_with_parent(parent_pid)
    rd = RunDir(Path(run_dir))
    setup_logging(rd.log(name), name, level=config.log.level)
    ctx = WorkerContext(name=name, config=config, run_dir=rd, rings=rings, extra=extra or {})

    def on_signal(signum: int, frame: object) -> None:
        ctx.stop.set()  # only a flag: the worker's loop notices and winds down

    signal.signal(signal.SIGTERM, on_signal)
    # Ctrl+C reaches the whole process group; the supervisor decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log.info("start %s pid=%d", name, os.getpid())
    log.debug("start %s: log level %s", name, config.log.level)
    code = 0
    try:
        module = importlib.import_module(f"reactor.workers.{name}")
        module.main(ctx)
        log.info("stop %s", name)
    except BaseException as exc:  # the process boundary: report and exit non-zero
        code = 1
        text = f"{type(exc).__name__}: {exc}"
        log.exception("fatal: %s", text)
        if ctx.link is not None:
            ctx.link.fatal(text)
            time.sleep(0.2)  # let the link thread deliver it
    finally:
        if ctx.link is not None:
            ctx.link.close()
        logging.shutdown()
    os._exit(code)
