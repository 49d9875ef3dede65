"""``WorkerLink`` against a real ROUTER socket: it is up before the worker attaches, hands
over what came early in order, and speaks typed readiness and client counts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from reactor.control.link import WorkerLink
from reactor.errors import ReactorError
from reactor.proto import control_pb2 as cpb
from reactor.proto import worker_pb2 as wpb
from reactor.workers.entry import REGISTRY, resolve


class Supervisor:
    """The supervisor's end: a ROUTER that collects what the worker says, by body."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)

    def recv(self, body: str, timeout: float = 5.0) -> wpb.FromWorker:
        """The next message with this body (others are skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(left * 1000) + 1):
                break
            ident, data = self.sock.recv_multipart()
            msg = wpb.FromWorker()
            msg.ParseFromString(data)
            self.identity = ident
            if msg.WhichOneof("body") == body:
                return msg
        raise AssertionError(f"no {body} message within {timeout} s")

    def send(self, msg: wpb.ToWorker) -> None:
        self.sock.send_multipart([self.identity, msg.SerializeToString()])

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture
def sup_and_link(tmp_path: Path) -> Iterator[tuple[Supervisor, WorkerLink]]:
    endpoint = f"ipc://{tmp_path / 'workers.sock'}"
    sup = Supervisor(endpoint)
    link = WorkerLink("egress", endpoint)
    link.start()
    try:
        yield sup, link
    finally:
        link.close()
        sup.close()


class Recorder:
    def __init__(self) -> None:
        self.got: list[wpb.ToWorker] = []
        self.event = threading.Event()

    def on_message(self, msg: wpb.ToWorker) -> None:
        self.got.append(msg)
        self.event.set()

    def stats(self) -> wpb.WorkerStats:
        return wpb.WorkerStats(frames_in=5, viewers=2)


def test_the_link_beats_before_the_worker_attaches_and_hands_over_early_messages(
        sup_and_link: tuple[Supervisor, WorkerLink]) -> None:
    sup, link = sup_and_link
    beat = sup.recv("heartbeat")
    assert beat.worker == "egress" and beat.heartbeat == wpb.WorkerStats()
    for i in (1, 2, 3):
        sup.send(wpb.ToWorker(event=wpb.SessionEvent(session_id=f"s{i}")))
    sup.send(wpb.ToWorker(stop="daemon stopping"))
    deadline = time.monotonic() + 5  # the link thread holds them: nobody to give them to
    while link.held < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert link.held == 4
    worker = Recorder()
    link.attach(worker.on_message, worker.stats)
    assert [m.WhichOneof("body") for m in worker.got] == ["event"] * 3 + ["stop"]
    assert [m.event.session_id for m in worker.got[:3]] == ["s1", "s2", "s3"]
    sup.send(wpb.ToWorker(event=wpb.SessionEvent(session_id="s4")))
    deadline = time.monotonic() + 5
    while len(worker.got) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.got[-1].event.session_id == "s4"
    beat = sup.recv("heartbeat")
    assert (beat.heartbeat.frames_in, beat.heartbeat.viewers) == (5, 2)


def test_readiness_and_client_counts_are_typed(
        sup_and_link: tuple[Supervisor, WorkerLink]) -> None:
    sup, link = sup_and_link
    link.ready(wpb.Ready(ingress=wpb.IngressReady(host="127.0.0.1", port=8081)))
    ready = sup.recv("ready").ready
    assert ready.WhichOneof("worker") == "ingress"
    assert (ready.ingress.host, ready.ingress.port) == ("127.0.0.1", 8081)
    link.clients(viewers=0)
    count = sup.recv("clients").clients
    assert count.HasField("viewers") and count.viewers == 0 and not count.HasField("sender")
    link.clients(sender=True)
    count = sup.recv("clients").clients
    assert count.sender and not count.HasField("viewers")


def test_a_request_gets_its_reply_through_a_future(
        sup_and_link: tuple[Supervisor, WorkerLink]) -> None:
    sup, link = sup_and_link
    link.attach(Recorder().on_message, Recorder().stats)
    fut = link.request(cpb.Request(status=cpb.StatusRequest()))
    req = sup.recv("request").request
    sup.send(wpb.ToWorker(reply=cpb.Reply(id=req.id, ok=cpb.Ok())))
    assert fut.result(timeout=5).HasField("ok")


def test_every_worker_in_the_registry_resolves_to_its_entry_function() -> None:
    for name in REGISTRY:
        entry: Any = resolve(name)
        assert entry.__module__ == f"reactor.workers.{name}" and entry.__name__ == "main"


def test_an_unknown_worker_is_a_clear_error() -> None:
    with pytest.raises(ReactorError, match=r"unknown worker 'encoder'; one of ingress, "
                                           r"inference, egress, source, sink"):
        resolve("encoder")


def test_on_ready_runs_before_the_supervisor_hears_ready(tmp_path: Path) -> None:
    # A worker's start-up ends with on_ready (the garbage collector's freeze): by the time
    # the supervisor counts it ready, that is done.
    endpoint = f"ipc://{tmp_path / 'workers.sock'}"
    sup = Supervisor(endpoint)
    seen: list[bool] = []

    def on_ready() -> None:
        seen.append(bool(sup.sock.poll(200)) and _has_ready(sup))

    link = WorkerLink("egress", endpoint, on_ready=on_ready)
    link.start()
    try:
        link.ready(wpb.Ready(egress=wpb.EgressReady(codec="h264")))
        assert sup.recv("ready").ready.egress.codec == "h264"
        assert seen == [False]
    finally:
        link.close()
        sup.close()


def _has_ready(sup: Supervisor) -> bool:
    """Whether a Ready is among what the supervisor's socket holds now (drained)."""
    found = False
    while sup.sock.poll(0):
        _, data = sup.sock.recv_multipart()
        msg = wpb.FromWorker()
        msg.ParseFromString(data)
        found = found or msg.WhichOneof("body") == "ready"
    return found


def test_freeze_gc_moves_start_up_objects_out_of_the_collectors_walk() -> None:
    import gc

    from reactor.runtime.gc import GC_THRESHOLDS, freeze_gc, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        kept = [[i] for i in range(1000)]  # tracked containers alive at "ready"
        freeze_gc()
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
