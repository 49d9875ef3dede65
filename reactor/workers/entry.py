"""The spawn target of every worker process, and the registry of worker entry functions.

The supervisor starts each worker with the ``multiprocess`` *spawn* context on
:func:`run_worker`, which sets the process up (parent watch, logging, signals), connects its
:class:`~reactor.workers.base.WorkerLink`, and calls the worker's entry function from
:data:`REGISTRY` with a :class:`~reactor.workers.base.WorkerContext`. The registry imports
a worker only when it is resolved, in the process that runs it; the workers import
``base``, never this module, so the two stay free of import cycles.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from reactor.config import Config
from reactor.control.link import WorkerLink
from reactor.control.rundir import RunDir
from reactor.errors import ReactorError
from reactor.ipc import RingHandles
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb
from reactor.run_options import RunOptions
from reactor.runtime.gc import freeze_gc, tune_gc
from reactor.runtime.logs import setup_logging
from reactor.runtime.parent import die_with_parent
from reactor.workers.base import WorkerContext

log = logging.getLogger(__name__)

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


def run_worker(
    name: str,
    config: Config,
    run_dir: str,
    rings: RingHandles,
    parent_pid: int,
    options: RunOptions | None = None,
) -> None:
    """The spawn target of every worker process."""
    die_with_parent(parent_pid)
    tune_gc()
    rd = RunDir(Path(run_dir))
    setup_logging(rd.log(name), name, level=config.log.level,
                  format=config.log.format)
    # Ready means start-up is over: what it made stays, and full collections skip it.
    link = WorkerLink(name, rd.endpoint("workers"), on_ready=freeze_gc)
    link.start()
    logging.getLogger().addHandler(_LinkLogHandler(link, name))
    ctx = WorkerContext(name=name, config=config, run_dir=rd, rings=rings, link=link,
                        options=options or RunOptions())

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
