"""The monitor's GPU panel: the GPU path and each device's load, from a ``Snapshot``.

Shown when there is something GPU to show (the output ring on a device, or NVML figures);
a CPU-only daemon's dashboard has no GPU panel. Pure, like every panel: the tests render
hand-built snapshots.
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from reactor.proto.telemetry_pb2 import GpuStat, Snapshot

GIB = 1024**3


def _bar(ratio: float, width: int) -> str:
    filled = round(max(0.0, min(ratio, 1.0)) * width)
    return "█" * filled + "·" * (width - filled)


def _path(g: GpuStat) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    if g.ring == "cuda":
        text.append(f"cuda:{g.index} {g.device_name}", style="bold")
        text.append("  frames on the GPU", style="green")
    else:
        text.append("frames in shared memory (CPU path)", style="dim")
    text.append("  H.264 ")
    running = g.encoder or "-"
    text.append(running, style="yellow" if g.encoder_fallback else "cyan")
    if g.encoder_plan and g.encoder_plan != running:
        text.append(f" (planned {g.encoder_plan})", style="dim")
    return text


def gpu_panels(snap: Snapshot, *, bar_width: int = 10) -> list[RenderableType]:
    """The GPU panel, or nothing when the daemon neither uses nor sees a GPU."""
    if not snap.HasField("gpu_stat"):
        return []
    g = snap.gpu_stat
    if g.ring != "cuda" and not g.devices:
        return []
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_row(_path(g))
    if g.encoder_fallback:
        table.add_row(Text(f"fallback: {g.encoder_fallback}", style="yellow", no_wrap=True,
                           overflow="ellipsis"))
    if not g.telemetry:
        table.add_row(Text(f"no telemetry: {g.telemetry_reason}", style="dim", no_wrap=True,
                           overflow="ellipsis"))
    for d in g.devices:
        mem = d.memory_used_bytes / d.memory_total_bytes if d.memory_total_bytes else 0.0
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"gpu{d.index} ", style="bold")
        line.append(f"util {_bar(d.utilization_ratio, bar_width)} "
                    f"{d.utilization_ratio * 100:3.0f}%  ")
        line.append(f"mem {_bar(mem, bar_width)} {d.memory_used_bytes / GIB:.1f}/"
                    f"{d.memory_total_bytes / GIB:.0f} GiB  ")
        line.append(f"nvenc {d.encoder_sessions}  {d.name}")
        table.add_row(line)
    return [table]
