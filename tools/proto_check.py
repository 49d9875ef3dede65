"""Generate the protobuf modules (`make proto`) and fail when the committed ones are stale
(`make proto-check`).

Generates every ``reactor/proto/*.proto`` with grpcio-tools, then removes what ties the
modules to one protobuf runtime: protoc 5.26 and later write a call to
``runtime_version.ValidateProtobufRuntimeVersion`` that refuses any runtime older than
the compiler (and ``google.protobuf.runtime_version`` does not exist before 5.26). The
rest of the module (``AddSerializedFile`` and the ``builder`` calls) is what protoc has
written since protobuf 4.21, so the modules import on every runtime from 4.21 through 7.x,
which is what ``pyproject.toml`` declares: a model whose own stack pins ``protobuf<5``
(MediaPipe, older TensorFlow) installs beside reactor. ``make test-proto-range`` runs the
control-plane and status tests on the lowest supported runtime.

``--write`` writes the modules into ``reactor/proto``; without it they are compared with
the committed ones.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent

_IMPORT = re.compile(r"^from google\.protobuf import runtime_version as _runtime_version\n",
                     re.MULTILINE)
_CHECK = re.compile(r"^_runtime_version\.ValidateProtobufRuntimeVersion\(\n(?:.*\n)*?\)\n",
                    re.MULTILINE)
NOTE = ("# The runtime version check protoc writes was removed (tools/proto_check.py): this\n"
        "# module imports on every protobuf runtime reactor supports (4.21 and later).\n")


def portable(source: str) -> str:
    """A generated ``_pb2.py`` without its runtime-version check (see the module)."""
    source, imports = _IMPORT.subn("", source)
    source, checks = _CHECK.subn(NOTE, source)
    if (imports, checks) not in ((0, 0), (1, 1)):
        raise ValueError("protoc's runtime version check has a shape this tool does not know; "
                         "update tools/proto_check.py")
    return source


def generate(out: Path) -> list[Path]:
    """Generate every proto into ``out``; the generated files."""
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "reactor/proto").glob("*.proto"))
    args = ["protoc", f"-I{ROOT}", f"--python_out={out}", f"--pyi_out={out}", *protos]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    files = sorted(out.rglob("*_pb2.py*"))
    for path in files:
        if path.suffix == ".py":
            path.write_text(portable(path.read_text()))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true",
                        help="write the modules into reactor/proto instead of comparing")
    args = parser.parse_args(argv)
    stale: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            files = generate(Path(tmp))
        except RuntimeError as exc:
            print(f"proto-check: {exc}", file=sys.stderr)
            return 1
        for fresh in files:
            rel = fresh.relative_to(tmp)
            committed = ROOT / rel
            if args.write:
                committed.write_bytes(fresh.read_bytes())
            elif not committed.exists() or committed.read_bytes() != fresh.read_bytes():
                stale.append(str(rel))
    if args.write:
        print(f"proto: wrote {len(files)} generated modules")
        return 0
    if stale:
        print("proto-check: stale generated modules (run `make proto`): " + ", ".join(stale))
        return 1
    print(f"proto-check: {len(files) // 2} proto files, generated modules current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
