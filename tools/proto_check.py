"""Fail when the committed protobuf modules are stale (`make proto-check`).

Regenerates every ``reactor/proto/*.proto`` into a temporary directory with grpcio-tools
and compares the output with the committed ``*_pb2.py`` / ``*_pb2.pyi`` files.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "reactor/proto").glob("*.proto"))
    stale: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{ROOT}", f"--python_out={tmp}", f"--pyi_out={tmp}", *protos]
        if protoc.main(args) != 0:
            print("proto-check: protoc failed", file=sys.stderr)
            return 1
        for fresh in sorted(Path(tmp).rglob("*_pb2.py*")):
            rel = fresh.relative_to(tmp)
            committed = ROOT / rel
            if not committed.exists() or committed.read_bytes() != fresh.read_bytes():
                stale.append(str(rel))
    if stale:
        print("proto-check: stale generated modules (run `make proto`): " + ", ".join(stale))
        return 1
    print(f"proto-check: {len(protos)} proto files, generated modules current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
