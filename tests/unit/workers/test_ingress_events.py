"""Session events to the WHIP sender's data channels: one a channel cannot take is
logged (the first as a warning, the rest at debug, with the count), never swallowed."""

from __future__ import annotations

import logging

import pytest
from aiortc.exceptions import InvalidStateError

from reactor.proto import worker_pb2 as wpb
from reactor.workers.admission import Admission
from reactor.workers.http import EventFeed
from reactor.workers.ingress import Ingress, Sender


class Channel:
    label = "events"
    readyState = "open"

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.sent: list[str] = []

    def send(self, text: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append(text)


def ingress_with(*channels: Channel) -> Ingress:
    ing = Ingress.__new__(Ingress)  # what publish_event reads, without rings or a link
    ing.events, ing.admission = EventFeed(), Admission(exclusive=False)
    ing.sender = Sender("s1", None)  # type: ignore[arg-type]
    ing.sender.channels.extend(channels)
    return ing


def event(text: str) -> wpb.SessionEvent:
    return wpb.SessionEvent(kind=wpb.SessionEvent.MESSAGE, session_id="abc", json=text, ts=1.0)


def test_an_event_a_channel_cannot_take_is_logged_once_as_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    closing, fine = Channel(InvalidStateError()), Channel()
    ing = ingress_with(closing, fine)
    with caplog.at_level(logging.DEBUG, logger="reactor.workers.ingress"):
        ing.publish_event(event('{"n": 1}'))
        ing.publish_event(event('{"n": 2}'))
    assert len(fine.sent) == 2  # the others still get every event
    lost = [r for r in caplog.records if "did not take" in r.getMessage()]
    assert [r.levelno for r in lost] == [logging.WARNING, logging.DEBUG]
    assert lost[0].getMessage().startswith(
        "sender s1: data channel 'events' did not take session abc's event (1 lost)")
    assert "(2 lost)" in lost[1].getMessage()


def test_an_unexpected_send_failure_is_not_swallowed() -> None:
    ing = ingress_with(Channel(RuntimeError("bug")))
    with pytest.raises(RuntimeError, match="bug"):
        ing.publish_event(event("{}"))
