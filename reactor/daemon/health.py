"""Warnings about a pipeline that runs, but slower than it should: the model under its
frame-rate target, or egress behind the model, for more than a few seconds.

The supervisor calls :meth:`PipelineHealth.check` with each telemetry snapshot's pipeline
(four times a second). A condition that holds for :data:`HOLD_S` seconds becomes a
warning, which the supervisor logs (the monitor's and status's warnings), sends to clients
as a ``warning`` event and lists in status (``pipeline.warnings``); it is cleared once the
condition has been gone for :data:`CLEAR_S` seconds. Each warning names the stage and the
figure, and what usually causes it.

- **The model is slow**: during a session, the model makes frames, but under
  :data:`SLOW_SHARE` of those it should: ``video.fps``, or the input's rate when a sender
  sends fewer. (A model that makes none waits for input, or has hung: the session's
  ``stall_timeout_s`` ends that.) The
  input ring's drops over the same seconds are named with it (with ``latest`` the ring
  drops what the model had no time for).
- **Egress is behind**: the output ring dropped frames (the model emits faster than
  egress takes them) in each of the last :data:`HOLD_S` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from reactor.daemon.sessions import SessionManager
from reactor.daemon.snapshot import Telemetry
from reactor.proto import telemetry_pb2 as tpb
from reactor.proto import worker_pb2 as wpb

log = logging.getLogger(__name__)

#: A model making fewer than this share of its target's frames is slow.
SLOW_SHARE = 0.8
#: How long a condition must hold before it is a warning...
HOLD_S = 5.0
#: ...and be gone before the warning is cleared.
CLEAR_S = 3.0


@dataclass
class _Condition:
    since: float | None = None  # when it began to hold
    last_seen: float | None = None  # when it last held
    active: bool = False
    dropped_at_start: int = 0


@dataclass
class PipelineHealth:
    """Turns conditions that hold for a while into warnings (see the module)."""

    hold_s: float = HOLD_S
    clear_s: float = CLEAR_S
    _conditions: dict[str, _Condition] = field(default_factory=dict)
    _messages: dict[str, str] = field(default_factory=dict)
    _last_drops: dict[str, tuple[float, int]] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """The warnings that hold now, each a sentence naming the stage and the figure."""
        return [self._messages[k] for k, c in self._conditions.items() if c.active]

    def tell(self, snap: tpb.Snapshot, sessions: SessionManager, telemetry: Telemetry,
             ) -> None:
        """Check ``snap``'s pipeline; a warning that begins goes to the log (the monitor's
        and status's warnings) and to clients (a ``warning`` event); ``snap`` lists the
        warnings that hold."""
        began, ended = self.check(time.monotonic(), snap.pipeline,
                                  live=snap.HasField("session"))
        for message in began:
            log.warning("%s", message)
            telemetry.add_log("supervisor", "WARNING", message)
            sessions.broadcast(wpb.SessionEvent(
                kind=wpb.SessionEvent.WARNING, session_id=snap.session.id, reason=message))
        for message in ended:
            log.info("no longer: %s", message)
        del snap.pipeline.warnings[:]
        snap.pipeline.warnings.extend(self.warnings)

    def check(self, now: float, pipeline: tpb.PipelineStat, live: bool,
              ) -> tuple[list[str], list[str]]:
        """One snapshot's pipeline (``live``: a session runs): the warnings that begin
        now, and the keys of those that end now (their last message)."""
        drops = {r.name: int(r.dropped) for r in pipeline.rings}
        began: list[str] = []
        ended: list[str] = []
        target = pipeline.target_fps
        expected = target if pipeline.fps_in < 1 else min(target, pipeline.fps_in)
        # A model making nothing waits for input (video to video, nobody sending) or has
        # hung, which the session's stall timeout ends; slow is a model that makes frames.
        slow = (live and expected > 0
                and 0 < pipeline.fps_model < SLOW_SHARE * expected)

        def model_message(c: _Condition, held: float) -> str:
            lost = drops.get("input", 0) - c.dropped_at_start
            source = (f"of its {target:g} fps target" if expected == target
                      else f"of the {expected:.1f} fps its input sends")
            dropped = (f"; the input ring dropped {lost} frames meanwhile" if lost > 0
                       else "")
            return (f"the model is slow: {pipeline.fps_model:.1f} fps {source} for "
                    f"{held:.0f} s (stage: model){dropped}. It takes longer than "
                    f"1/{target:g} s a frame: see `reactor daemon status`, "
                    "latency, stage model")

        self._step("model", now, slow, drops.get("input", 0), model_message, began, ended)
        behind = self._ring_dropping("output", now, drops.get("output"))

        def egress_message(c: _Condition, held: float) -> str:
            lost = drops.get("output", 0) - c.dropped_at_start
            return (f"egress is behind: the output ring dropped {lost} frames in {held:.0f} s "
                    f"(stage: output_ring; the model emits faster than egress encodes "
                    f"and sends, {pipeline.fps_out:.1f} fps out)")

        self._step("egress", now, behind, drops.get("output", 0), egress_message, began,
                   ended)
        return began, ended

    def _ring_dropping(self, name: str, now: float, dropped: int | None) -> bool:
        """Whether ring ``name`` dropped a frame within the last second."""
        if dropped is None:
            return False
        last = self._last_drops.get(name)
        if last is None or dropped < last[1]:  # a restarted ring counts from zero
            self._last_drops[name] = (now, dropped)
            return False
        if dropped > last[1]:
            self._last_drops[name] = (now, dropped)
            return True
        return now - last[0] < 1.0

    def _step(self, key: str, now: float, holds: bool, dropped: int,
              message: Callable[[_Condition, float], str],
              began: list[str], ended: list[str]) -> None:
        c = self._conditions.setdefault(key, _Condition())
        if holds:
            if c.since is None:
                c.since, c.dropped_at_start = now, dropped
            c.last_seen = now
            if now - c.since >= self.hold_s:
                self._messages[key] = message(c, now - c.since)
                if not c.active:
                    c.active = True
                    began.append(self._messages[key])
        elif c.since is not None and (c.last_seen is None or now - c.last_seen >= self.clear_s):
            if c.active:
                ended.append(self._messages[key])
            self._conditions[key] = _Condition()
