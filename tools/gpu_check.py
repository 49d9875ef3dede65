"""``make gpu-check``: every ``cuda``-marked test and the ``gpu`` bench, in one command.

On a machine with a CUDA device (torch sees one) it runs ``pytest -m cuda`` (killed after
60 % of ``--budget``, 5 minutes) and then ``tools/bench.py gpu``'s figures
(:mod:`bench_gpu`, fixed counts sized to take about a minute, not timed against the budget;
each of its waits has its own timeout), and writes everything to
``gpu-results.json``: the tests' outcome, the figures, and each goal met or missed.
It exits non-zero when a test failed.

Without one it says so, writes ``{"available": false, "reason": ...}`` and exits 0: CI
and CPU machines run it as a no-op that tells why.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gpu  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/gpu_check.py", description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="gpu-results.json")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="seconds for the whole check (tests get 60%%, the bench the rest)")
    parser.add_argument("--quick", action="store_true", help="a short bench")
    args = parser.parse_args(argv)
    out_path = Path(args.output)
    reason = bench_gpu.cuda_reason()
    if reason:
        out_path.write_text(json.dumps({"available": False, "reason": reason}, indent=1) + "\n")
        print(f"gpu-check: skipped: {reason} (wrote {out_path})")
        return 0
    start = time.monotonic()
    tests_limit = args.budget * 0.6
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"],
            cwd=ROOT, capture_output=True, text=True, timeout=tests_limit)
        tests = {"exit_code": proc.returncode, "summary": proc.stdout.strip().splitlines()[-1:]}
    except subprocess.TimeoutExpired:
        tests = {"exit_code": None, "summary": [f"timed out after {tests_limit:.0f} s"]}
    tests["seconds"] = round(time.monotonic() - start, 1)
    print(f"gpu-check: cuda tests: {tests['summary']} ({tests['seconds']} s)")
    bench = bench_gpu.run(quick=args.quick)
    result = {"available": True, "tests": tests, "bench": bench,
              "seconds": round(time.monotonic() - start, 1)}
    out_path.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(json.dumps(bench, indent=1, sort_keys=True))
    print(f"gpu-check: wrote {out_path} in {result['seconds']} s")
    return 0 if tests["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
