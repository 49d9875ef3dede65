"""What every worker process shares: its entry point, logging, parent watch and link.

A worker is started by the supervisor with the ``multiprocess`` *spawn* context and runs
:func:`run_worker`, which sets up the process, connects its :class:`WorkerLink`, and calls
the worker's entry function from :data:`REGISTRY` with a :class:`WorkerContext`. The
worker object that entry makes is a :class:`Worker`: it takes the supervisor's messages
and reports its stats, through ``ctx.attach(worker)``. Everything a worker does happens
inside one ``try``: any exception is logged, reported to the supervisor as ``fatal``, and
the process exits non-zero.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reactor.config import Config
from reactor.control.link import WorkerLink
from reactor.control.rundir import RunDir
from reactor.errors import ReactorError
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
LOG_FORMAT = "%(asctime)s %(levelname)-7s {process}[%(process)d] %(name)s: %(message)s"


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
        """Route the supervisor's messages to ``worker`` and send its stats from now on."""
        self.link.attach(worker.on_message, worker.stats)
        return self.link


WorkerMain = Callable[[WorkerContext], None]


# The entry function of each worker, imported only in the process that runs it: ingress
# alone needs aiohttp and aiortc, inference alone the model's dependencies.
def _ingress() -> WorkerMain:
    from reactor.workers import ingress

    return ingress.main


def _inference() -> WorkerMain:
    from reactor.workers import inference

    return inference.main


def _egress() -> WorkerMain:
    from reactor.workers import egress

    return egress.main


def _source() -> WorkerMain:
    from reactor.workers import source

    return source.main


def _sink() -> WorkerMain:
    from reactor.workers import sink

    return sink.main


REGISTRY: dict[str, Callable[[], WorkerMain]] = {
    "ingress": _ingress,
    "inference": _inference,
    "egress": _egress,
    "source": _source,
    "sink": _sink,
}


def resolve(name: str) -> WorkerMain:
    """The entry function of the worker called ``name``."""
    try:
        load = REGISTRY[name]
    except KeyError:
        raise ReactorError(f"unknown worker {name!r}; one of {', '.join(REGISTRY)}") from None
    return load()


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
    link = WorkerLink(name, rd.endpoint("workers"))
    link.start()
    logging.getLogger().addHandler(_LinkLogHandler(link, name))
    ctx = WorkerContext(name=name, config=config, run_dir=rd, rings=rings, link=link,
                        extra=extra or {})

    def on_signal(signum: int, frame: object) -> None:
        ctx.stop.set()  # only a flag: the worker's loop notices and winds down

    signal.signal(signal.SIGTERM, on_signal)
    # Ctrl+C reaches the whole process group; the supervisor decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log.info("start %s pid=%d", name, os.getpid())
    log.debug("start %s: log level %s", name, config.log.level)
    code = 0
    try:
        resolve(name)(ctx)
        log.info("stop %s", name)
    except BaseException as exc:  # the process boundary: report and exit non-zero
        code = 1
        text = f"{type(exc).__name__}: {exc}"
        log.exception("fatal: %s", text)
        link.fatal(text)
        time.sleep(0.2)  # let the link thread deliver it
    finally:
        link.close()
        logging.shutdown()
    os._exit(code)
