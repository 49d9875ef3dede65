"""When a headless run (``reactor run``) is done, judged from the workers' heartbeats.

Apart from :mod:`reactor.daemon.headless` (the command, which starts a supervisor) so that
the supervisor can ask without importing the command that starts it.
"""

from __future__ import annotations

from reactor.proto import worker_pb2 as wpb


def run_complete(source: wpb.WorkerStats, model: wpb.WorkerStats, sink: wpb.WorkerStats,
                 *, input_dropped: int, output_used: int) -> bool:
    """A file run is done when the source has finished and every frame it wrote was
    processed by the model (or dropped, and counted), and the sink has written every
    frame the model emitted (none left in the output ring).

    A model that reads input is done with it only once it waits for the next frame
    (``awaiting_input``): a heartbeat taken after it read the last frame, while it still
    works on it, must not end the run before that frame's output (and sound) is written.
    A generative model reads no input: it is done once it emitted as many frames as the
    source wrote."""
    if not source.finished:
        return False
    written = source.frames_out
    consumed = model.awaiting_input and model.frames_in + input_dropped >= written
    generative = model.frames_in == 0 and model.frames_out >= written
    drained = sink.frames_in >= model.frames_out
    return (consumed or generative) and drained and output_used == 0
