"""``WorkerLink``: a worker's one connection to the supervisor.

A DEALER socket (identity = the worker's name) to the supervisor's ``workers.sock``
ROUTER, owned by one background thread. ZeroMQ sockets are not thread-safe, so other
threads never touch it: they hand messages to the link thread through an ``inproc`` PUSH
socket of their own (one per thread), which wakes the link thread's poller at once. The
thread also sends a heartbeat with the worker's stats twice a second, and hands every
message from the supervisor to ``on_message``. Hot loops never touch a socket: they only
update counters that the heartbeat reads.

The link exists before the worker's own code runs (so a worker that fails while starting
still reports why); the worker attaches its handlers (:meth:`~WorkerLink.attach`) once it can take
messages, and what arrived before that is handed over then, in order.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import zmq

from reactor.control.sockets import make_socket
from reactor.proto import control_pb2 as cpb
from reactor.proto import worker_pb2 as wpb

log = logging.getLogger(__name__)

HEARTBEAT_S = 0.5


class WorkerLink:
    def __init__(self, name: str, endpoint: str, *,
                 on_ready: Callable[[], None] | None = None) -> None:
        self.name = name
        self._on_ready = on_ready  # start-up is over: run before Ready is sent
        self._endpoint = endpoint
        self._on_message: Callable[[wpb.ToWorker], None] | None = None
        self._stats: Callable[[], wpb.WorkerStats] = wpb.WorkerStats
        self._early: deque[wpb.ToWorker] = deque(maxlen=1000)  # before attach()
        self._attach_lock = threading.Lock()
        self._ctx = zmq.Context()
        self._inproc = f"inproc://link-out-{id(self)}"
        self._pull = make_socket(self._ctx, zmq.PULL, bind=self._inproc, hwm=100_000)
        self._local = threading.local()
        self._pushers: list[zmq.Socket[Any]] = []
        self._pushers_lock = threading.Lock()
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[cpb.Reply]] = {}
        self._pending_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"{name}-link", daemon=True)
        self._outbox: deque[bytes] = deque(maxlen=10_000)

    def start(self) -> None:
        self._thread.start()

    @property
    def held(self) -> int:
        """Messages that arrived before :meth:`attach`, waiting for it."""
        with self._attach_lock:
            return len(self._early)

    def attach(self, on_message: Callable[[wpb.ToWorker], None],
               stats: Callable[[], wpb.WorkerStats]) -> None:
        """Start handing messages to ``on_message`` (those that came early first) and
        sending ``stats()`` in the heartbeats."""
        # Under the lock, so a message the link thread receives meanwhile waits for the
        # early ones: the handler sees every message in the order it was sent.
        with self._attach_lock:
            self._stats = stats
            while self._early:
                self._handle(on_message, self._early.popleft())
            self._on_message = on_message

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        with self._pushers_lock:
            for s in self._pushers:
                s.close(0)
        self._ctx.destroy(0)

    # --- sending, from any thread ---------------------------------------------------

    def send(self, msg: wpb.FromWorker) -> None:
        msg.worker = self.name
        msg.pid = os.getpid()
        if threading.current_thread() is self._thread:
            # On the link thread itself (a reply made while dispatching): no inproc hop,
            # the loop sends it as soon as the handler returns.
            self._outbox.append(msg.SerializeToString())
            return
        sock = getattr(self._local, "push", None)
        if sock is None:
            sock = make_socket(self._ctx, zmq.PUSH, connect=self._inproc, hwm=100_000)
            self._local.push = sock
            with self._pushers_lock:
                self._pushers.append(sock)
        try:
            sock.send(msg.SerializeToString(), zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # closing, or a flood: never block the caller
            log.debug("link: dropped an outgoing message: %s", exc)

    def ready(self, ready: wpb.Ready) -> None:
        """Tell the supervisor this worker can serve, and what it serves (after the
        link's ``on_ready``, if it has one)."""
        if self._on_ready is not None:
            self._on_ready()
        self.send(wpb.FromWorker(ready=ready))

    def clients(self, *, viewers: int | None = None, sender: bool | None = None) -> None:
        """Report the clients this worker knows of (egress: viewers; ingress: the sender)."""
        count = wpb.ClientCount()
        if viewers is not None:
            count.viewers = viewers
        if sender is not None:
            count.sender = sender
        self.send(wpb.FromWorker(clients=count))

    def fatal(self, text: str) -> None:
        self.send(wpb.FromWorker(fatal=text))

    def event(self, event: wpb.SessionEvent) -> None:
        if not event.ts:
            event.ts = time.time()
        self.send(wpb.FromWorker(event=event))

    def reply(self, to_id: int, reply: cpb.Reply) -> None:
        self.send(wpb.FromWorker(reply_to=to_id, reply=reply))

    def request(self, req: cpb.Request) -> Future[cpb.Reply]:
        """Ask the supervisor (on behalf of a client); the future gets its reply."""
        fut: Future[cpb.Reply] = Future()
        req.id = next(self._ids)
        with self._pending_lock:
            self._pending[req.id] = fut
        self.send(wpb.FromWorker(request=req))
        return fut

    def forget(self, req_id: int) -> None:
        with self._pending_lock:
            self._pending.pop(req_id, None)

    # --- the link thread --------------------------------------------------------------

    def _run(self) -> None:
        dealer = make_socket(
            self._ctx, zmq.DEALER, connect=self._endpoint, identity=self.name.encode(),
            hwm=100_000,
        )
        poller = zmq.Poller()
        poller.register(dealer, zmq.POLLIN)
        poller.register(self._pull, zmq.POLLIN)
        next_beat = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_beat:
                    self._heartbeat(dealer)
                    next_beat = now + HEARTBEAT_S
                events = dict(poller.poll(int(max(0.0, next_beat - now) * 1000) + 1))
                if self._pull in events:
                    for _ in range(1000):
                        try:
                            dealer.send(self._pull.recv(zmq.NOBLOCK), zmq.NOBLOCK)
                        except zmq.Again:
                            break
                if dealer in events:
                    for _ in range(1000):
                        try:
                            data = dealer.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._dispatch(data)
                while self._outbox:
                    try:
                        dealer.send(self._outbox[0], zmq.NOBLOCK)
                    except zmq.Again:
                        break  # the supervisor is not reading; try again next turn
                    self._outbox.popleft()
        except zmq.ContextTerminated:
            pass
        except Exception:
            log.exception("link thread failed")
        finally:
            dealer.close(0)
            self._pull.close(0)

    def _heartbeat(self, dealer: zmq.Socket[Any]) -> None:
        try:
            stats = self._stats()
        except Exception:
            log.exception("stats failed")
            stats = wpb.WorkerStats()
        msg = wpb.FromWorker(worker=self.name, pid=os.getpid(), heartbeat=stats)
        try:
            dealer.send(msg.SerializeToString(), zmq.NOBLOCK)
        except zmq.Again:
            pass  # the supervisor is not there (yet); the next beat tries again

    def _dispatch(self, data: bytes) -> None:
        msg = wpb.ToWorker()
        try:
            msg.ParseFromString(data)
        except Exception:
            log.warning("link: dropped a malformed message (%d bytes)", len(data))
            return
        if msg.WhichOneof("body") == "reply":
            with self._pending_lock:
                fut = self._pending.pop(msg.reply.id, None)
            if fut is not None and not fut.done():
                fut.set_result(msg.reply)
            return
        with self._attach_lock:
            handler = self._on_message
            if handler is None:
                self._early.append(msg)
                return
        self._handle(handler, msg)

    @staticmethod
    def _handle(handler: Callable[[wpb.ToWorker], None], msg: wpb.ToWorker) -> None:
        try:
            handler(msg)
        except Exception:
            log.exception("link: handling a %s message failed", msg.WhichOneof("body"))
