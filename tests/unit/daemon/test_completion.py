"""When a headless ``reactor run`` is done: every input frame accounted for, all written."""

from __future__ import annotations

from reactor.daemon.completion import run_complete
from reactor.proto.worker_pb2 import WorkerStats


def stats(frames_in: int = 0, frames_out: int = 0, finished: bool = False) -> WorkerStats:
    return WorkerStats(frames_in=frames_in, frames_out=frames_out, finished=finished)


def model(frames_in: int, frames_out: int, awaiting_input: bool = True) -> WorkerStats:
    return WorkerStats(frames_in=frames_in, frames_out=frames_out,
                       awaiting_input=awaiting_input)


def test_not_done_while_the_source_is_reading() -> None:
    assert not run_complete(stats(0, 90), model(90, 90), stats(90), input_dropped=0,
                            output_used=0)


def test_done_when_every_frame_was_processed_and_written() -> None:
    assert run_complete(stats(90, 90, True), model(90, 90), stats(90), input_dropped=0,
                        output_used=0)


def test_not_done_while_the_model_still_works_on_the_last_frame_it_read() -> None:
    # It read all 90 and wrote 89: the sink has all 89 and the ring is empty, yet frame
    # 90 (and its sound) is still coming.
    assert not run_complete(stats(90, 90, True), model(90, 89, awaiting_input=False),
                            stats(89), input_dropped=0, output_used=0)


def test_dropped_input_frames_count_as_accounted_for() -> None:
    assert run_complete(stats(90, 90, True), model(60, 60), stats(60), input_dropped=30,
                        output_used=0)
    assert not run_complete(stats(90, 90, True), model(60, 60), stats(60), input_dropped=29,
                            output_used=0)


def test_not_done_while_the_sink_has_frames_to_write() -> None:
    assert not run_complete(stats(90, 90, True), model(90, 90), stats(88), input_dropped=0,
                            output_used=0)
    assert not run_complete(stats(90, 90, True), model(90, 90), stats(90), input_dropped=0,
                            output_used=1)


def test_a_generative_model_is_done_once_it_emitted_as_many_frames() -> None:
    # It reads no input (frames_in 0) and nothing was dropped: its output is what counts.
    assert not run_complete(stats(90, 90, True), model(0, 89, False), stats(89), input_dropped=0,
                            output_used=0)
    assert run_complete(stats(90, 90, True), model(0, 90, False), stats(90), input_dropped=0,
                        output_used=0)
