"""What every worker process shares: its context and the worker protocol.

A worker process runs :func:`reactor.workers.entry.run_worker`, which sets the process up
(logging, gc, parent watch: :mod:`reactor.runtime`), connects its :class:`WorkerLink`, and
calls the worker's entry function with a :class:`WorkerContext`. The worker object that
entry makes is a
:class:`Worker`: it takes the supervisor's messages and reports its stats, through
``ctx.attach(worker)``. Everything a worker does happens inside one ``try``: any exception
is logged, reported to the supervisor as ``fatal``, and the process exits non-zero.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Protocol

from reactor.config import Config
from reactor.control.link import WorkerLink
from reactor.control.rundir import RunDir
from reactor.ipc import RingHandles
from reactor.proto import worker_pb2 as wpb
from reactor.run_options import RunOptions
from reactor.runtime.logs import set_log_session

log = logging.getLogger(__name__)


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
    rings: RingHandles
    link: WorkerLink
    options: RunOptions = field(default_factory=RunOptions)
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
