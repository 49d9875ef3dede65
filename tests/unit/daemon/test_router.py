"""The request router on an in-memory link and a fake clock: one answer for every request."""

from __future__ import annotations

import pytest

from reactor.daemon.headless import headless_plan
from reactor.daemon.plan import Plan
from reactor.daemon.pool import WorkerState
from reactor.daemon.router import FORWARD_TIMEOUT_S, Router, viewer_limit
from reactor.proto import control_pb2 as cpb
from tests.support.fakes import FakeClock, Wire

CLIENT = ("control", b"client-1")


def command(req_id: int = 7) -> cpb.Request:
    return cpb.Request(id=req_id, command=cpb.CommandRequest(name="set_gain",
                                                             args_json='{"gain": 2}'))


def whep(req_id: int, close: bool = False) -> cpb.Request:
    return cpb.Request(id=req_id, whep=cpb.WhepRequest(sdp="v=0", close=close))


def make_router(wire: Wire, clock: FakeClock, plan: Plan | None = None,
                states: dict[str, str] | None = None, **kw: object) -> Router:
    states = states or {}
    return Router(wire, (plan or Plan()).route_table(),
                  state_of=lambda name: WorkerState(states.get(name, "running")), clock=clock,
                  **kw)  # type: ignore[arg-type]


def test_each_kind_goes_to_the_worker_the_plan_names(wire: Wire, clock: FakeClock) -> None:
    router = make_router(wire, clock)
    router.forward(command(), CLIENT)
    router.forward(whep(8), ("worker", b"ingress"))
    assert [(w, m.request.WhichOneof("body")) for w, m in wire.sent] == [
        ("inference", "command"), ("egress", "whep")]
    assert wire.replies == []  # nothing answered yet


def test_the_reply_goes_back_to_the_asker_with_its_own_id(wire: Wire, clock: FakeClock) -> None:
    router = make_router(wire, clock)
    router.forward(command(req_id=41), CLIENT)
    (_, sent), = wire.sent
    done = router.on_reply(sent.id, cpb.Reply(command=cpb.CommandReply(result_json="null")))
    assert done is not None and done.request.command.name == "set_gain"
    (route, reply), = wire.replies
    assert route == CLIENT and reply.id == 41 and reply.command.result_json == "null"
    assert router.on_reply(sent.id, cpb.Reply()) is None  # a second answer goes nowhere
    assert len(wire.replies) == 1


def test_a_request_no_worker_serves_gets_a_clear_error_at_once(
        wire: Wire, clock: FakeClock) -> None:
    # A WHEP offer sent to a headless `reactor run`: it has a sink, not egress.
    router = make_router(wire, clock, headless_plan("in.mp4", None, (), lossless=False),
                         states={"inference": "running"})
    router.forward(whep(3), CLIENT)
    assert wire.sent == []
    (route, reply), = wire.replies
    assert route == CLIENT and reply.id == 3
    assert reply.error.status == 404
    assert reply.error.message == ("no worker of this pipeline serves 'whep' requests "
                                   "(the workers here answer: command)")


def test_a_worker_that_is_not_running_is_a_503_naming_its_state(
        wire: Wire, clock: FakeClock) -> None:
    router = make_router(wire, clock, states={"inference": "restarting"})
    router.forward(command(5), CLIENT)
    (_, reply), = wire.replies
    assert (reply.id, reply.error.status) == (5, 503)
    assert reply.error.message == "the inference worker is restarting; try again shortly"
    assert wire.sent == []


def test_a_worker_that_is_not_connected_is_a_503(clock: FakeClock) -> None:
    wire = Wire(connected=("ingress",))
    router = make_router(wire, clock)
    router.forward(command(5), CLIENT)
    (_, reply), = wire.replies
    assert reply.error.message == "the inference worker is not connected"
    assert router.pending == []


def test_an_unanswered_request_expires_with_a_504(wire: Wire, clock: FakeClock) -> None:
    router = make_router(wire, clock)
    router.forward(command(9), CLIENT)
    clock.advance(FORWARD_TIMEOUT_S - 0.1)
    router.expire()
    assert wire.replies == []
    clock.advance(0.2)
    router.expire()
    (route, reply), = wire.replies
    assert (route, reply.id, reply.error.status) == (CLIENT, 9, 504)
    assert reply.error.message == "no answer within 10 s"
    (_, sent), = wire.sent
    assert router.on_reply(sent.id, cpb.Reply()) is None  # a late answer is dropped
    assert len(wire.replies) == 1


def test_a_dead_worker_fails_only_its_own_requests(wire: Wire, clock: FakeClock) -> None:
    router = make_router(wire, clock)
    router.forward(command(1), CLIENT)
    router.forward(whep(2), ("worker", b"ingress"))
    router.worker_lost("inference", "exit code -9")
    (route, reply), = wire.replies
    assert (route, reply.id, reply.error.status) == (CLIENT, 1, 503)
    assert reply.error.message == "the inference worker died before answering (exit code -9)"
    assert [p.worker for p in router.pending] == ["egress"]


@pytest.mark.parametrize("watching", [0, 2])
def test_the_viewer_limit_counts_viewers_and_offers_still_joining(
        wire: Wire, clock: FakeClock, watching: int) -> None:
    limit = 3
    router = make_router(wire, clock,
                         admission={"whep": viewer_limit(lambda: limit, lambda: watching)})
    for i in range(limit + 1):
        router.forward(whep(10 + i), ("worker", b"ingress"))
    forwarded = [m.request.id for m in wire.to("egress")]
    assert forwarded == list(range(10, 10 + limit - watching))
    refused = [r for _, r in wire.replies]
    assert [r.error.status for r in refused] == [503] * (1 + watching)
    joining = limit - watching
    assert refused[-1].error.message == (f"{watching} viewers already watch and {joining} are "
                                         f"joining; the limit is server.max_viewers = {limit}")
    # Leaving is never refused, even at the limit.
    router.forward(whep(99, close=True), ("worker", b"ingress"))
    assert wire.to("egress")[-1].request.id == 99


def test_the_supervisor_answers_its_own_kinds_and_forwards_the_rest(
        wire: Wire, clock: FakeClock) -> None:
    answered: list[str] = []
    router = make_router(wire, clock, local={
        "status": lambda req, route: answered.append(f"status {req.id} {route[1].decode()}")})
    router.handle(cpb.Request(id=1, status=cpb.StatusRequest()), CLIENT)
    router.handle(command(2), CLIENT)
    assert answered == ["status 1 client-1"]
    assert [m.request.id for m in wire.to("inference")] == [2]
    assert router.serves("status") and router.serves("command") and not router.serves("stop")
