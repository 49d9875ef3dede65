"""A pipeline that runs slow for a few seconds becomes a warning naming the stage and the
figure, and stops being one once it is fast again."""

from __future__ import annotations

from reactor.daemon.health import CLEAR_S, HOLD_S, PipelineHealth
from reactor.proto import telemetry_pb2 as tpb


def pipeline(fps_model: float, *, target: float = 15, fps_in: float = 0,
             input_dropped: int = 0, output_dropped: int = 0) -> tpb.PipelineStat:
    p = tpb.PipelineStat(fps_in=fps_in, fps_model=fps_model, fps_out=fps_model,
                         target_fps=target)
    p.rings.add(name="input", dropped=input_dropped)
    p.rings.add(name="output", dropped=output_dropped)
    return p


def run(health: PipelineHealth, seconds: float, start: float = 0.0, *, fps_model: float,
        fps_in: float = 0, input_dropped: int = 0) -> tuple[list[str], list[str]]:
    began: list[str] = []
    ended: list[str] = []
    t = start
    while t < start + seconds:
        b, e = health.check(t, pipeline(fps_model, fps_in=fps_in,
                                        input_dropped=input_dropped), live=True)
        began += b
        ended += e
        t += 0.25
    return began, ended


def test_a_model_under_its_target_for_a_few_seconds_is_a_warning_naming_the_figure() -> None:
    health = PipelineHealth()
    began, _ = run(health, HOLD_S - 0.5, fps_model=6.0)
    assert began == [] and health.warnings == []  # not yet: a moment's dip is no warning
    began, _ = run(health, 1.0, start=HOLD_S - 0.5, fps_model=6.0)
    assert len(began) == 1 and health.warnings == began
    assert began[0].startswith("the model is slow: 6.0 fps of its 15 fps target for 5 s "
                               "(stage: model)")


def test_the_input_rings_drops_are_named_with_it() -> None:
    health = PipelineHealth()
    health.check(0.0, pipeline(6.0, input_dropped=100), live=True)
    began, _ = run(health, HOLD_S, start=0.25, fps_model=6.0, input_dropped=379)
    assert "the input ring dropped 279 frames meanwhile" in began[0]


def test_a_model_that_keeps_up_with_a_slow_sender_is_not_slow() -> None:
    health = PipelineHealth()
    began, _ = run(health, 10, fps_model=9.5, fps_in=10)  # 10 fps in, 15 fps target
    assert began == []
    began, _ = run(health, 10, start=10, fps_model=5.0, fps_in=10)
    assert "5.0 fps of the 10.0 fps its input sends" in began[0]


def test_a_model_waiting_for_input_is_not_slow() -> None:
    health = PipelineHealth()  # video to video, nobody sending: the model makes nothing
    began, _ = run(health, 20, fps_model=0.0)
    assert began == [] and health.warnings == []


def test_no_warning_without_a_session_and_it_clears_once_fast_again() -> None:
    health = PipelineHealth()
    for t in range(20):
        assert health.check(float(t), pipeline(0.0), live=False) == ([], [])
    began, _ = run(health, HOLD_S + 1, fps_model=6.0)
    assert began
    _, ended = run(health, CLEAR_S - 0.5, start=HOLD_S + 1, fps_model=15.0)
    assert ended == [] and health.warnings  # not cleared on the first fast second
    _, ended = run(health, 1.0, start=HOLD_S + CLEAR_S + 0.5, fps_model=15.0)
    assert len(ended) == 1 and ended[0].startswith("the model is slow: 6.0 fps")
    assert health.warnings == []


def test_egress_behind_the_model_is_a_warning_of_its_own() -> None:
    health = PipelineHealth()
    began: list[str] = []
    for i in range(int((HOLD_S + 1) * 4)):
        b, _ = health.check(i * 0.25, pipeline(15.0, output_dropped=3 * i), live=True)
        began += b
    assert len(began) == 1
    assert began[0].startswith("egress is behind: the output ring dropped ")
    assert "(stage: output_ring" in began[0]
