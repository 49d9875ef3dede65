"""The supervisor's shell, without processes or sockets: READYs and verdicts fed in by hand,
what it sends and replies recorded by :class:`tests.support.fakes.Wire`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from reactor.config import Config, ServerSection
from reactor.daemon import supervisor as supervisor_module
from reactor.daemon.lifecycle import DaemonState
from reactor.daemon.pool import Outcome, Verdict
from reactor.daemon.supervisor import Supervisor
from reactor.proto import control_pb2 as cpb
from reactor.proto import worker_pb2 as wpb
from tests.support.fakes import Wire

GOOD_SCHEMA = json.dumps({"model": "echo", "video": {"width": 64, "height": 48, "fps": 30},
                          "commands": [{"name": "set_gain"}]})


class Pub:
    """The telemetry socket: what was published."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes, flags: int = 0) -> None:
        self.sent.append(data)


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def sup(tmp_path: Path, wire: Wire, monkeypatch: pytest.MonkeyPatch) -> Supervisor:
    s = Supervisor(Config(server=ServerSection(port=0)), tmp_path)
    monkeypatch.setattr(s, "send_to", wire.send)
    monkeypatch.setattr(s, "reply", wire.reply)
    monkeypatch.setattr(s, "pub", Pub(), raising=False)
    # freeze_gc would move this test process's whole heap out of the collector's reach.
    monkeypatch.setattr(supervisor_module, "freeze_gc", lambda: None)
    return s


def ready(sup: Supervisor, schema_json: str = GOOD_SCHEMA, port: int = 45_678) -> None:
    sup._on_ready("ingress", wpb.Ready(ingress=wpb.IngressReady(port=port)))
    sup._on_ready("inference", wpb.Ready(inference=wpb.InferenceReady(
        schema_json=schema_json)))
    sup._on_ready("egress", wpb.Ready(egress=wpb.EgressReady(codec="h264")))


def schema_reply(sup: Supervisor, wire: Wire) -> cpb.Reply:
    sup._on_schema(cpb.Request(id=7, schema=cpb.SchemaRequest()), ("control", b"cli"))
    route, reply = wire.replies[-1]
    assert route == ("control", b"cli") and reply.id == 7
    return reply


def worker_events(wire: Wire) -> list[dict[str, object]]:
    return [json.loads(m.event.json) for m in wire.to("ingress")
            if m.WhichOneof("body") == "event" and m.event.json]


# --- the life cycle through the shell ------------------------------------------------------


def test_all_workers_ready_runs_the_daemon(sup: Supervisor, caplog: pytest.LogCaptureFixture,
                                           ) -> None:
    caplog.set_level(logging.INFO, "reactor.daemon.supervisor")
    assert sup.lifecycle.state is DaemonState.STARTING
    ready(sup)
    assert sup.state is DaemonState.RUNNING
    assert "ready: all workers running; open http://127.0.0.1:45678/" in caplog.messages


def test_a_restart_verdict_degrades_and_tells_clients(sup: Supervisor, wire: Wire) -> None:
    ready(sup)
    egress = sup.pool["egress"]
    sup._on_verdict(Verdict(egress, Outcome.RESTART, "exit code 1", "exit code 1", 0.5))
    assert sup.state is DaemonState.DEGRADED
    assert worker_events(wire)[-1] == {"worker": "egress", "state": "restarting", "pid": 0,
                                       "delay_s": 0.5}


def test_a_give_up_fails_the_daemon_with_the_workers_last_log_lines(
        sup: Supervisor, wire: Wire) -> None:
    sup.rd.logs.mkdir()
    sup.rd.log("inference").write_text("loading\nTraceback: boom\n")
    sup._on_verdict(Verdict(sup.pool["inference"], Outcome.GIVE_UP,
                            "inference failed to start: boom", "exit code 1"))
    assert sup.state is DaemonState.FAILED
    assert sup.error == (f"inference failed to start: boom\n--- last lines of "
                         f"{sup.rd.log('inference')} ---\nloading\nTraceback: boom")
    assert sup.snapshot().error == sup.error
    assert not sup.lifecycle.stop_requested
    assert worker_events(wire)[-1] == {"worker": "inference", "state": "failed"}


# --- the bound port: config stays as started ----------------------------------------------


def test_the_port_ingress_bound_is_the_url_and_a_restarted_ingress_gets_it(
        sup: Supervisor) -> None:
    config = sup.config
    ready(sup, port=45_678)
    assert sup.config is config and sup.config.server.port == 0  # never replaced
    assert sup.url() == sup.snapshot().url == "http://127.0.0.1:45678/"
    assert sup._worker_config().server.port == 45_678
    # A restarted ingress has not said its port yet: the URL stays the bound one.
    sup.pool["ingress"].ready = wpb.Ready()
    assert sup.snapshot().url == "http://127.0.0.1:45678/"


def test_a_fixed_port_is_passed_on_as_it_is(tmp_path: Path) -> None:
    sup = Supervisor(Config(server=ServerSection(port=8123)), tmp_path)
    assert sup._worker_config() is sup.config
    assert sup.url() == "http://127.0.0.1:8123/"


# --- the model's schema -------------------------------------------------------------------


def test_the_schema_is_answered_once_the_model_is_ready(sup: Supervisor, wire: Wire) -> None:
    assert schema_reply(sup, wire).error.message == "the model is not loaded yet"
    ready(sup)
    assert json.loads(schema_reply(sup, wire).schema.schema_json)["model"] == "echo"
    assert sup.snapshot().model == "echo"


@pytest.mark.parametrize(("schema_json", "why"), [
    ("{not json", "not JSON"),
    ('["set_gain"]', "expected a JSON object, found list"),
    ('{"model": "echo", "commands": {"set_gain": {}}}', "'commands' must be a list, found dict"),
    ('{"commands": [{"description": "no name"}]}',
     "'commands'[0] must be an object with a 'name' string"),
])
def test_a_schema_that_cannot_be_read_is_an_error_not_a_model_still_loading(
        sup: Supervisor, wire: Wire, caplog: pytest.LogCaptureFixture,
        schema_json: str, why: str) -> None:
    ready(sup, schema_json=schema_json)
    error = schema_reply(sup, wire).error
    assert error.message.startswith("the model's schema could not be read: ")
    assert why in error.message and error.status == 503  # as documented: no model to use
    assert any(r.levelno == logging.ERROR and "the model's schema could not be read" in
               r.getMessage() and why in r.getMessage() for r in caplog.records)
    snap = sup.snapshot()  # the rest of the daemon goes on
    assert any(why in line.message for line in snap.logs)
    assert snap.model == sup.config.model.module
    # A restarted model with a good schema clears the error.
    sup._on_ready("inference", wpb.Ready(inference=wpb.InferenceReady(schema_json=GOOD_SCHEMA)))
    assert schema_reply(sup, wire).HasField("schema")


# --- telemetry ----------------------------------------------------------------------------


def test_a_bug_in_the_snapshot_is_logged_and_the_daemon_goes_on(
        sup: Supervisor, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise KeyError("egress")

    monkeypatch.setattr(sup, "snapshot", broken)
    for _ in range(5):  # a second of turns: one report, not five
        sup._publish()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "building the status snapshot failed (KeyError: 'egress')" in errors[0].getMessage()
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is KeyError
    pub = sup.pub
    monkeypatch.setattr(sup, "snapshot", Supervisor.snapshot.__get__(sup))  # fixed
    sup._publish()  # the next turn publishes again
    assert isinstance(pub, Pub) and len(pub.sent) == 1
