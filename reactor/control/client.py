"""``ControlClient``: talk to a running daemon's control socket (CLI, monitor, tests)."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import zmq

from reactor.control.rundir import RunDir
from reactor.control.sockets import make_socket
from reactor.errors import CommandError, DaemonError
from reactor.proto import control_pb2 as pb
from reactor.proto import telemetry_pb2 as tpb


class ControlClient:
    """A DEALER socket to ``control.sock``: one request, one reply, or a timeout error."""

    def __init__(self, run_dir: Path, *, timeout_s: float = 10.0) -> None:
        self.run_dir = RunDir(Path(run_dir))
        self.timeout_s = timeout_s
        self._ctx = zmq.Context()
        self._sock = make_socket(
            self._ctx, zmq.DEALER, connect=self.run_dir.endpoint("control"), sndtimeo_ms=1000
        )
        self._ids = itertools.count(1)

    @classmethod
    def connect(cls, run_dir: Path, *, timeout_s: float = 10.0) -> ControlClient:
        """Connect to the daemon of ``run_dir``; a clear error when none is running."""
        rd = RunDir(Path(run_dir))
        if rd.live_pid() is None or not rd.socket_path("control").exists():
            raise DaemonError(
                f"no daemon is running at {rd.path} (start one with `reactor daemon start`)"
            )
        return cls(Path(run_dir), timeout_s=timeout_s)

    def close(self) -> None:
        self._sock.close(0)
        self._ctx.term()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, req: pb.Request, timeout_s: float | None = None) -> pb.Reply:
        """Send one request and wait for its reply; raise ``DaemonError`` on timeout."""
        req.id = next(self._ids)
        self._sock.send_multipart([b"", req.SerializeToString()])
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(int(left * 1000) + 1):
                what = req.WhichOneof("body")
                raise DaemonError(
                    f"the daemon at {self.run_dir.path} did not answer a {what} request "
                    f"within {self.timeout_s:g} s (see `reactor daemon logs supervisor`)"
                )
            frames = self._sock.recv_multipart()
            reply = pb.Reply()
            reply.ParseFromString(frames[-1])
            if reply.id == req.id:  # an older request's late reply is skipped
                return reply

    def _checked(self, req: pb.Request, timeout_s: float | None = None) -> pb.Reply:
        reply = self.request(req, timeout_s)
        if reply.HasField("error"):
            err = reply.error
            if err.status in (404, 422):
                raise CommandError(err.message, field=err.field or None, status=err.status)
            raise DaemonError(err.message)
        return reply

    def status(self) -> tpb.Snapshot:
        return self._checked(pb.Request(status=pb.StatusRequest())).status

    def schema(self) -> dict[str, Any]:
        reply = self._checked(pb.Request(schema=pb.SchemaRequest()))
        result: dict[str, Any] = json.loads(reply.schema.schema_json)
        return result

    def stop(self) -> None:
        self._checked(pb.Request(stop=pb.StopRequest()))

    def drain(self, timeout_s: float | None = None) -> tpb.Snapshot:
        """Drain the daemon (no new session; it stops once the running one ends, or after
        ``timeout_s``; ``None``: ``session.drain_timeout_s``); the status it answers."""
        req = pb.Request(drain=pb.DrainRequest())
        if timeout_s is not None:
            req.drain.timeout_s = timeout_s
        return self._checked(req).status

    def restart_worker(self, worker: str) -> None:
        self._checked(pb.Request(restart_worker=pb.RestartWorkerRequest(worker=worker)))

    def command(self, name: str, args: dict[str, Any] | None = None) -> Any:
        """Run a model command; raise ``CommandError`` naming the field when invalid."""
        req = pb.Request(command=pb.CommandRequest(name=name, args_json=json.dumps(args or {})))
        reply = self._checked(req)
        return json.loads(reply.command.result_json or "null")

    def start_session(self) -> str:
        req = pb.Request(session=pb.SessionRequest(action=pb.SessionRequest.START))
        return self._checked(req).session.session_id

    def stop_session(self, reason: str = "stopped by request") -> None:
        req = pb.Request(session=pb.SessionRequest(action=pb.SessionRequest.STOP, reason=reason))
        self._checked(req)
