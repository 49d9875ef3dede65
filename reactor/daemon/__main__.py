"""``python -m reactor.daemon --run-dir DIR``: the detached supervisor.

The launcher starts this in a new process session and writes the validated config, as
JSON, to its standard input.
"""

from __future__ import annotations

import argparse
import sys

from reactor.config import Config
from reactor.daemon.launcher import run_supervisor


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m reactor.daemon")
    parser.add_argument("--run-dir", required=True)
    args = parser.parse_args()
    config = Config.model_validate_json(sys.stdin.read())
    return run_supervisor(config, args.run_dir, console=False)


if __name__ == "__main__":
    sys.exit(main())
