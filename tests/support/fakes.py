"""Fakes for the daemon's parts: a clock the test moves, processes that only say whether
they are alive, and an in-memory link that records what the supervisor would send."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from reactor.daemon.router import Route
from reactor.proto import control_pb2 as cpb
from reactor.proto import worker_pb2 as wpb


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


_pids = itertools.count(40_000)


@dataclass
class FakeProcess:
    """A started worker process: alive until the test kills it or makes it exit."""

    name: str
    pid: int = field(default_factory=lambda: next(_pids))
    exitcode: int | None = None
    killed: bool = False

    @property
    def sentinel(self) -> int:
        return self.pid

    def is_alive(self) -> bool:
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        pass

    def exit(self, code: int) -> None:
        self.exitcode = code

    def terminate(self) -> None:
        self.exit(-15)

    def kill(self) -> None:
        self.killed = True
        self.exit(-9)


class Spawner:
    """The pool's ``spawn``: records every process it starts, by worker."""

    def __init__(self) -> None:
        self.started: list[FakeProcess] = []

    def __call__(self, name: str) -> FakeProcess:
        proc = FakeProcess(name)
        self.started.append(proc)
        return proc

    def of(self, name: str) -> list[FakeProcess]:
        return [p for p in self.started if p.name == name]


class Wire:
    """An in-memory link: what was sent to each worker, what was replied on each route.
    ``connected`` lists the workers a send reaches."""

    def __init__(self, connected: tuple[str, ...] = ("ingress", "inference", "egress")) -> None:
        self.connected = set(connected)
        self.sent: list[tuple[str, wpb.ToWorker]] = []
        self.replies: list[tuple[Route, cpb.Reply]] = []

    def send(self, worker: str, msg: wpb.ToWorker) -> bool:
        if worker not in self.connected:
            return False
        self.sent.append((worker, msg))
        return True

    def reply(self, route: Route, reply: cpb.Reply) -> None:
        self.replies.append((route, reply))

    def to(self, worker: str) -> list[wpb.ToWorker]:
        return [m for w, m in self.sent if w == worker]
