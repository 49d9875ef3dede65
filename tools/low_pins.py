#!/usr/bin/env python3
"""The lowest version of each runtime dependency pyproject.toml admits, for `make
test-proto-range`, which runs the unit tests on them.

    python tools/low_pins.py [--except NAME ...]    # print "numpy==1.26 av==18 ..." for pip
    python tools/low_pins.py --check [--except ...] # exit 1 unless each is what is installed

A pin's low end is its ``>=`` (or ``==``) bound; a dependency without one is left out (pip
picks it). ``--except protobuf`` leaves a pin to the caller (the Makefile names protobuf's
low end itself: 4.21.0 is a yanked release).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)\s*(?:>=|==)\s*([0-9][0-9A-Za-z.]*)")


def low_ends(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """``{"numpy": "1.26", ...}``: each runtime dependency's lowest admitted version."""
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    found = {}
    for dep in deps:
        m = PIN.match(dep)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def _release(version: str) -> tuple[int, ...]:
    """``"1.26"`` and ``"1.26.0"`` compare equal: trailing zeros do not count."""
    parts = [int(p) for p in re.findall(r"\d+", version.split("+")[0])]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="check that the installed versions are the low ends")
    parser.add_argument("--except", dest="skip", nargs="*", default=[], metavar="NAME",
                        help="dependencies to leave out")
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml",
                        help="the pyproject.toml to read (default: the checkout's)")
    args = parser.parse_args(argv)
    pins = {k: v for k, v in low_ends(args.pyproject).items() if k.lower() not in
            {s.lower() for s in args.skip}}
    if not args.check:
        print(" ".join(f"{name}=={version}" for name, version in pins.items()))
        return 0
    wrong = []
    for name, version in pins.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "none"
        if _release(installed) != _release(version):
            wrong.append(f"{name}: {installed} installed, the low end is {version}")
    for line in wrong:
        print(f"low_pins: {line}", file=sys.stderr)
    if not wrong:
        print(f"low_pins: {len(pins)} {'dependency' if len(pins) == 1 else 'dependencies'} "
              "at their low end")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
