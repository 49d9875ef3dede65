"""``reactor run -c CONFIG --input IN [--output OUT] [--duration S] [--commands FILE.jsonl]``
and ``reactor run -c CONFIG --output OUT --duration S`` (no input: a generative model).

Runs the daemon's own pipeline — supervisor, rings, the same inference worker — with a
file source in place of ingress and a file sink in place of egress, in the foreground,
and exits when every input frame is accounted for: processed by the model, or dropped
and counted (``--lossless`` makes the input ring blocking, so none is dropped). Without
``--input`` the model renders ``S * fps`` frames on its own clock (not paced: as fast as
it can) and the run ends when the sink has them. The sound goes along: the input's to
the model with ``audio.input``, the model's into the MP4 with ``audio.output``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from reactor.config import Config
from reactor.daemon.plan import Plan
from reactor.errors import CommandError, ReactorError
from reactor.run_options import RunOptions, TimedCommand

if TYPE_CHECKING:
    from reactor.daemon.supervisor import Supervisor

#: The longest ``--duration`` (a day): a guard against a typo'd unit, not a limit of the run.
MAX_DURATION_S = 86_400.0


def headless_plan(input_path: str | None, output_path: str | None,
                  commands: tuple[TimedCommand, ...], lossless: bool,
                  duration_s: float | None = None) -> Plan:
    """A file source and a file sink around the inference worker; only commands served."""
    from reactor.daemon.plan import Role

    return Plan(
        workers=("source", "inference", "sink"),
        input_policy="block" if lossless else "latest",
        options=RunOptions(input=input_path, output=output_path, duration_s=duration_s,
                           lossless=lossless, headless=True, commands=commands),
        routes={"command": Role.MODEL},
    )


def load_commands(path: str | Path, config: Config) -> tuple[TimedCommand, ...]:
    """Read and validate timed commands, one JSON object a line:
    ``{"at_frame": 30, "command": "set_gain", "args": {"gain": 2}}``."""
    model = config.model_class()
    out: list[TimedCommand] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ReactorError(f"--commands {path}: cannot read: {exc}") from None
    for number, line in enumerate(lines, 1):
        where = f"{path}:{number}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise ReactorError(f"{where}: not a JSON object: {exc}") from None
        if not isinstance(item, dict):
            raise ReactorError(f"{where}: expected a JSON object, found {type(item).__name__}")
        unknown = set(item) - {"at_frame", "command", "args"}
        if unknown:
            raise ReactorError(f"{where}: unknown keys {sorted(unknown)}; "
                               "expected at_frame, command, args")
        at = item.get("at_frame")
        if not isinstance(at, int) or isinstance(at, bool) or at < 0:
            raise ReactorError(f"{where}: at_frame must be a frame number >= 0, found {at!r}")
        name = item.get("command")
        if not isinstance(name, str):
            raise ReactorError(f"{where}: command must be a command name, found {name!r}")
        try:
            args = model.validate_command(name, item.get("args") or {})
        except CommandError as exc:
            raise ReactorError(f"{where}: {exc}") from None
        out.append(TimedCommand(at_frame=at, command=name, args=args))
    return tuple(out)


def run_headless(
    config: Config,
    *,
    input_path: str | None,
    output_path: str | None,
    commands_path: str | None,
    lossless: bool,
    run_dir: Path | None = None,
    duration_s: float | None = None,
) -> int:
    from reactor.daemon.launcher import run_supervisor

    if duration_s is not None and not (0 < duration_s <= MAX_DURATION_S):
        raise ReactorError(f"--duration {duration_s:g}: expected seconds, more than 0 and at "
                           f"most {MAX_DURATION_S}")
    if duration_s is not None and round(duration_s * config.video.fps) < 1:
        raise ReactorError(f"--duration {duration_s:g}: shorter than one frame at "
                           f"video.fps = {config.video.fps}")
    if not input_path and duration_s is None:
        raise ReactorError("reactor run --output needs --input: the run ends when the input does"
                           " (or --duration S, to render a generative model for S seconds)")
    if input_path and not Path(input_path).is_file():
        raise ReactorError(f"--input {input_path}: no such file")
    commands = load_commands(commands_path, config) if commands_path else ()
    plan = headless_plan(input_path, output_path, commands, lossless, duration_s)
    keep_run_dir = run_dir is not None
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp(prefix="reactor-run-"))
    sup: Supervisor | None = None

    def keep(s: Supervisor) -> None:
        nonlocal sup
        sup = s

    code = run_supervisor(config, run_dir, console=False, plan=plan, on_start=keep)
    final = sup.final if sup is not None else None
    if final is None or code != 0:
        error = final.error if final is not None else "the pipeline did not start"
        print(f"reactor run: failed: {error}\nlogs: {run_dir / 'logs'}", file=sys.stderr)
        return 1
    by_name = {w.name: w for w in final.workers}
    written = by_name["sink"].frames_out
    where = f" to {output_path}" if output_path else ""
    if input_path:
        read = by_name["source"].frames_out
        processed = by_name["inference"].frames_in
        dropped = next((r.dropped for r in final.pipeline.rings if r.name == "input"), 0)
        print(f"reactor run: {read} input frames: {processed} processed, {dropped} dropped; "
              f"{written} frames written{where}")
    else:
        print(f"reactor run: {written} frames rendered ({written / config.video.fps:g} s at "
              f"{config.video.fps} fps){where}")
    if not keep_run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0
