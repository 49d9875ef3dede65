#!/usr/bin/env python3
"""Build reactor's release artifacts (wheel and sdist) from a stripped copy of the package.

    python tools/publish.py [--out DIR] [--check] [--no-isolation] [--keep-stage] [--root DIR]

``make publish`` runs it. The steps, in order:

1. **Stage.** Copy ``reactor/``, ``pyproject.toml``, ``README.md`` and any licence files
   (``LICEN[CS]E*``, ``COPYING*``, ``NOTICE*``) into a temporary directory. The checkout is
   never modified.
2. **Strip.** Remove every file and directory under ``reactor/`` whose name starts with
   ``_`` (``__init__.py``, ``__main__.py`` and ``__pycache__`` excepted), so internal code can
   live in the repository without shipping.
3. **Check private imports.** Parse every public module (``.py`` and ``.pyi``) with
   :mod:`ast` and fail, naming file, line and module, when one imports a private module —
   ``import reactor.x._y``, ``from reactor.x import _y``, ``from ._y import z``,
   ``from . import _y`` — or names one in an import string (``"reactor.x._y:Thing"``). Such an
   import works in the checkout and breaks in the installed wheel, because step 2 removes
   its target.
4. **Vendor protobuf.** Collect the generated modules (``reactor.proto.*_pb2``) that public
   code imports, follow the generated modules' imports of each other (and the ``import``
   lines of their ``.proto`` files) transitively, and keep only those modules' ``_pb2.py``,
   ``_pb2.pyi`` and ``.proto`` files. Unused generated code is dropped.
5. **Build.** ``python -m build --wheel --sdist --outdir OUT STAGE`` (``dist/`` by default),
   then open the wheel and the sdist and verify that neither ships a private file and that
   they hold exactly the vendored protobuf files.

The version comes from ``reactor/__init__.py``'s ``__version__`` (pyproject.toml declares
it dynamic); if pyproject.toml states a static version instead, the checks fail when the
two differ. ``--check`` runs steps 2 to 4 (and that one) on the checkout
without copying or building (for CI). Exit
status: 0 done, 1 a check failed, 2 the environment cannot build (a missing tool).
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "reactor"
PROTO_PACKAGE = f"{PACKAGE}.proto"
# Names this project's distribution was built under before (its artifacts in the output
# directory are cleared too, so `make upload` never sends a wheel under a former name).
FORMER_NAMES = ("reactor",)
# Names that start with "_" but are part of every package's public shape.
KEEP_NAMES = frozenset({"__init__.py", "__main__.py", "__pycache__"})
KEEP_MODULES = frozenset({"__init__", "__main__"})
LICENSE_GLOBS = ("LICEN[CS]E*", "COPYING*", "NOTICE*", "AUTHORS*")
# The oldest setuptools that understands `license = "SPDX"` in [project] (PEP 639).
MIN_SETUPTOOLS = (77,)
# A string constant that names a module inside the package, as config defaults and
# spawn targets do ("reactor.examples.pattern:TestPattern").
IMPORT_STRING = re.compile(rf"{PACKAGE}(?:\.[A-Za-z_]\w*)+(?::[A-Za-z_][\w.]*)?")
PROTO_IMPORT = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.MULTILINE)


class PublishError(Exception):
    """A check failed; the message says what was found and what to do."""


class EnvironmentProblem(Exception):
    """The running Python cannot build (a tool is missing); the message says what to install."""


def is_private_name(name: str) -> bool:
    """A file or directory name that is stripped from the release."""
    return name.startswith("_") and name not in KEEP_NAMES


def is_private_module(dotted: str) -> bool:
    """A dotted module name with a private component (``reactor.ipc._sync``)."""
    return any(p.startswith("_") and p not in KEEP_MODULES for p in dotted.split(".")[1:])


def is_generated(path: PurePosixPath) -> bool:
    """``reactor/proto/x_pb2.py``, ``x_pb2.pyi`` or ``x.proto``: protoc's inputs and outputs."""
    return str(path.parent) == PROTO_PACKAGE.replace(".", "/") and (
        path.name.endswith(("_pb2.py", "_pb2.pyi")) or path.suffix == ".proto"
    )


def pb2_of_proto(proto: PurePosixPath) -> str:
    """The generated module's name for a ``.proto`` file, as protoc names it."""
    return proto.stem.replace("-", "_").replace(".", "_") + "_pb2"


def owner_of(generated: PurePosixPath) -> str:
    """The generated module a generated file belongs to (``x_pb2`` for ``x.proto``)."""
    return pb2_of_proto(generated) if generated.suffix == ".proto" else generated.stem


@dataclass(frozen=True)
class Import:
    """One module named by an import statement (or an import string) in a source file."""

    file: str  # relative to the root, posix
    line: int
    module: str  # absolute dotted name
    statement: str  # the source text, for messages


@dataclass
class Plan:
    """What a release of the checkout at ``root`` ships, strips and vendors."""

    root: Path
    name: str
    version: str
    stripped: list[str] = field(default_factory=list)  # relative paths; directories end in "/"
    public_files: list[str] = field(default_factory=list)
    violations: list[tuple[Import, str]] = field(default_factory=list)  # (import, target path)
    vendored: dict[str, str] = field(default_factory=dict)  # pb2 module name -> why
    vendored_files: list[str] = field(default_factory=list)
    dropped_files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# -- scanning -------------------------------------------------------------------------------


def walk_package(root: Path) -> tuple[list[str], list[str]]:
    """(public files, stripped paths) under ``root/reactor``, both relative to ``root``."""
    public: list[str] = []
    stripped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root / PACKAGE):
        rel_dir = Path(dirpath).relative_to(root)
        for d in sorted(dirnames):
            if is_private_name(d) and d != "__pycache__":
                stripped.append(f"{(rel_dir / d).as_posix()}/")
        # Pruning here is what makes a private directory's contents go with it.
        dirnames[:] = sorted(
            d for d in dirnames
            if not is_private_name(d) and d != "__pycache__" and not d.endswith(".egg-info")
        )
        for f in sorted(filenames):
            if f.endswith((".pyc", ".pyo")):
                continue
            rel = (rel_dir / f).as_posix()
            (stripped if is_private_name(f) else public).append(rel)
    return public, stripped


def module_of(rel: str) -> tuple[str, bool]:
    """(dotted module name, is a package) for a ``.py``/``.pyi`` path relative to the root."""
    parts = list(PurePosixPath(rel).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def module_path(root: Path, dotted: str) -> str | None:
    """The file or package directory (relative, posix) that ``dotted`` names, if it exists."""
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base.with_suffix(".pyi")):
        if candidate.is_file():
            return candidate.relative_to(root).as_posix()
    if base.is_dir():
        return f"{base.relative_to(root).as_posix()}/"
    return None


def parse(root: Path, rel: str) -> tuple[ast.Module, list[str]]:
    """The file's syntax tree and its lines; a syntax error names the file and line."""
    source = (root / rel).read_text(encoding="utf-8")
    try:
        return ast.parse(source, filename=rel), source.splitlines()
    except SyntaxError as exc:
        raise PublishError(f"{rel}:{exc.lineno}: cannot parse: {exc.msg}") from exc


def imports_of(root: Path, rel: str) -> Iterator[tuple[Import, bool]]:
    """Every module ``rel`` imports: (import, whether the name is certainly a module).

    ``from pkg import name`` may import a submodule or an attribute; it is yielded with
    ``certain=False`` and callers decide by whether ``pkg/name`` exists.
    """
    tree, lines = parse(root, rel)
    this, is_pkg = module_of(rel)
    package = this if is_pkg else this.rpartition(".")[0]

    def text(node: ast.stmt | ast.expr) -> str:
        return lines[node.lineno - 1].strip() if node.lineno <= len(lines) else ""

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(rel, node.lineno, alias.name, text(node)), True
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1
                parts = package.split(".") if package else []
                if up > len(parts):
                    continue  # beyond the top-level package: Python refuses it too
                base_parts = parts[: len(parts) - up]
                if node.module:
                    base_parts.append(node.module)
                base = ".".join(base_parts)
            else:
                base = node.module or ""
            if base:
                yield Import(rel, node.lineno, base, text(node)), True
            for alias in node.names:
                if alias.name != "*":
                    name = f"{base}.{alias.name}" if base else alias.name
                    yield Import(rel, node.lineno, name, text(node)), False
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and IMPORT_STRING.fullmatch(node.value)
        ):
            dotted = node.value.partition(":")[0]
            yield Import(rel, node.lineno, dotted, f"import string {node.value!r}"), False


def find_violations(root: Path, public: list[str]) -> list[tuple[Import, str]]:
    """Public modules' imports of private modules, with the private target's path."""
    found: list[tuple[Import, str]] = []
    for rel in public:
        if not rel.endswith((".py", ".pyi")):
            continue
        for imp, certain in imports_of(root, rel):
            if imp.module.split(".")[0] != PACKAGE or not is_private_module(imp.module):
                continue
            target = module_path(root, imp.module)
            if target is None and not certain:
                continue  # a private attribute of a public module, not a module
            found.append((imp, target or "(no such module)"))
    return sorted(set(found), key=lambda v: (v[0].file, v[0].line, v[0].module))


def pb2_name(dotted: str) -> str | None:
    """``x_pb2`` for ``reactor.proto.x_pb2`` (or anything inside it), else None."""
    prefix = f"{PROTO_PACKAGE}."
    if not dotted.startswith(prefix):
        return None
    head = dotted[len(prefix) :].split(".")[0]
    return head if head.endswith("_pb2") else None


def vendor_protos(root: Path, public: list[str], plan: Plan) -> None:
    """Fill ``plan.vendored`` (transitively) and split generated files into kept and dropped."""
    proto_dir = PurePosixPath(PROTO_PACKAGE.replace(".", "/"))
    generated = sorted(p for p in public if is_generated(PurePosixPath(p)))
    queue: list[tuple[str, str]] = []  # (pb2 name, why)
    for rel in public:
        if rel.endswith((".py", ".pyi")) and not is_generated(PurePosixPath(rel)):
            for imp, _certain in imports_of(root, rel):
                name = pb2_name(imp.module)
                if name is not None:
                    queue.append((name, f"{imp.file}:{imp.line}"))
    while queue:
        name, why = queue.pop(0)
        if name in plan.vendored:
            continue
        py, pyi = proto_dir / f"{name}.py", proto_dir / f"{name}.pyi"
        if str(py) not in public:
            plan.errors.append(
                f"{why}: imports {PROTO_PACKAGE}.{name}, but {py} does not exist in the "
                "public source (run `make proto`, or remove the import)"
            )
            continue
        plan.vendored[name] = why
        for rel in (str(py), str(pyi)):
            if rel in public:
                for imp, _certain in imports_of(root, rel):
                    dep = pb2_name(imp.module)
                    if dep is not None:
                        queue.append((dep, f"imported by {name}"))
        for proto in (p for p in generated if p.endswith(".proto")):
            if pb2_of_proto(PurePosixPath(proto)) != name:
                continue
            for target in PROTO_IMPORT.findall((root / proto).read_text(encoding="utf-8")):
                target_path = PurePosixPath(target)
                if str(target_path.parent) == str(proto_dir):
                    queue.append((pb2_of_proto(target_path), f"imported by {proto}"))
    for rel in generated:
        owner = owner_of(PurePosixPath(rel))
        (plan.vendored_files if owner in plan.vendored else plan.dropped_files).append(rel)


def declared_version(root: Path) -> str | None:
    """The literal ``__version__`` in the package's ``__init__.py``, if it has one."""
    init = f"{PACKAGE}/__init__.py"
    if not (root / init).is_file():
        return None
    for node in parse(root, init)[0].body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    return None


def make_plan(root: Path) -> Plan:
    """Scan the checkout at ``root``: what is stripped, what is vendored, what is wrong."""
    pyproject = root / "pyproject.toml"
    if not (root / PACKAGE).is_dir() or not pyproject.is_file():
        raise PublishError(f"{root}: expected {PACKAGE}/ and pyproject.toml (use --root)")
    project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    declared = declared_version(root)
    # The version is either static in pyproject.toml or read from __version__ (dynamic).
    version = project.get("version") or (declared if "version" in project.get("dynamic", [])
                                         else None)
    plan = Plan(root, str(project.get("name", PACKAGE)), str(version or "?"))
    plan.public_files, plan.stripped = walk_package(root)
    if "version" in project and declared is not None and declared != plan.version:
        plan.errors.append(
            f"{PACKAGE}/__init__.py says __version__ = {declared!r} but pyproject.toml says "
            f"version = {plan.version!r}; bump both to the release's version"
        )
    plan.violations = find_violations(root, plan.public_files)
    vendor_protos(root, plan.public_files, plan)
    return plan


# -- reporting ------------------------------------------------------------------------------


def report(plan: Plan) -> None:
    print(f"publish: {plan.name} {plan.version} from {plan.root}")
    print(f"stripped ({len(plan.stripped)}; private, not shipped):")
    for rel in plan.stripped:
        print(f"  {rel}")
    if not plan.stripped:
        print("  (nothing)")
    print(f"vendored protobuf modules ({len(plan.vendored)}; imported by public code):")
    for name in sorted(plan.vendored):
        files = [PurePosixPath(f).name for f in plan.vendored_files
                 if owner_of(PurePosixPath(f)) == name]
        print(f"  {name:<20} {' '.join(sorted(files))}  ({plan.vendored[name]})")
    print(f"dropped generated files ({len(plan.dropped_files)}; imported by no public module):")
    for rel in plan.dropped_files:
        print(f"  {rel}")
    if not plan.dropped_files:
        print("  (nothing)")


def failure_message(plan: Plan) -> str | None:
    parts: list[str] = []
    if plan.violations:
        parts.append(
            f"error: {len(plan.violations)} import(s) of private modules from public code. "
            "Private (_-prefixed) modules are stripped from the release, so these imports "
            "work in the checkout and fail once installed:"
        )
        for imp, target in plan.violations:
            parts.append(f"  {imp.file}:{imp.line}: imports private module {imp.module} "
                         f"({target})  [{imp.statement}]")
        parts.append(
            "fix: make the module public (rename it without the leading underscore and update "
            "its importers), or move the importing code into a private module."
        )
    for err in plan.errors:
        parts.append(f"error: {err}")
    return "\n".join(parts) if parts else None


# -- staging and building -------------------------------------------------------------------


def stage(plan: Plan, dest: Path) -> None:
    """Copy the release's sources into ``dest``, minus private and unused generated files."""
    root = plan.root
    skip = {*(s.rstrip("/") for s in plan.stripped), *plan.dropped_files}

    def ignore(directory: str, names: list[str]) -> set[str]:
        rel_dir = Path(directory).relative_to(root)
        return {
            n for n in names
            if n == "__pycache__" or n.endswith((".pyc", ".pyo", ".egg-info"))
            or (rel_dir / n).as_posix() in skip
        }

    shutil.copytree(root / PACKAGE, dest / PACKAGE, ignore=ignore)
    shutil.copy2(root / "pyproject.toml", dest / "pyproject.toml")
    if (root / "README.md").is_file():
        shutil.copy2(root / "README.md", dest / "README.md")
    for entry in sorted(root.iterdir()):
        if entry.is_file() and any(fnmatch.fnmatch(entry.name, g) for g in LICENSE_GLOBS):
            shutil.copy2(entry, dest / entry.name)
    # The copy must be exactly the plan; a mismatch would be a bug here, not in the checkout.
    leaked = [p for p in (dest / PACKAGE).rglob("*") if is_private_name(p.name)]
    if leaked:
        raise PublishError(f"staging left private files: {', '.join(map(str, leaked))}")


def check_build_tools(no_isolation: bool) -> list[str]:
    """Extra ``build`` arguments, after checking that the tools are importable."""
    if importlib.util.find_spec("build") is None:
        raise EnvironmentProblem(
            f"the `build` package is not installed in {sys.executable}; run `make install` "
            "(it is in the dev extra) or `pip install build`"
        )
    if not no_isolation:
        return []
    # Without isolation the backend comes from this environment. `wheel` (also listed in
    # build-system.requires) is not needed: setuptools >= 70.1 ships bdist_wheel itself, so
    # build's own requirement check is skipped once setuptools is known to be recent enough.
    try:
        found = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        found = ""
    numbers = tuple(int(n) for n in re.findall(r"\d+", found)[:1])
    if not found or numbers < MIN_SETUPTOOLS:
        want = ".".join(map(str, MIN_SETUPTOOLS))
        raise EnvironmentProblem(
            f"--no-isolation builds with this environment's setuptools, which is "
            f"{found or 'not installed'}; pyproject.toml needs setuptools>={want} "
            f"(`pip install 'setuptools>={want}'`, or drop --no-isolation to let build fetch it)"
        )
    return ["--no-isolation", "--skip-dependency-check"]


def clear_old_artifacts(plan: Plan, out: Path) -> None:
    """Remove this project's earlier wheels and sdists (under its name or a former one) so
    `make upload` sends only this build."""
    stems = {re.sub(r"[-_.]+", "_", name).lower() for name in (plan.name, *FORMER_NAMES)}
    for stem in sorted(stems):
        for old in sorted([*out.glob(f"{stem}-*.whl"), *out.glob(f"{stem}-*.tar.gz")]):
            old.unlink()
            print(f"removed old artifact {old}")


def build(plan: Plan, staged: Path, out: Path, extra: list[str], verbose: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    clear_old_artifacts(plan, out)
    cmd = [sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", str(out), *extra,
           str(staged)]
    print(f"building: {' '.join(cmd)}", flush=True)
    result = subprocess.run(cmd, capture_output=not verbose, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(((result.stdout or "") + (result.stderr or "")).splitlines()[-40:])
        raise PublishError(f"`python -m build` failed (exit {result.returncode}):\n{tail}")
    stem = re.sub(r"[-_.]+", "_", plan.name).lower()
    return sorted([*out.glob(f"{stem}-*.whl"), *out.glob(f"{stem}-*.tar.gz")])


def verify_artifact(plan: Plan, artifact: Path) -> None:
    """Fail unless the artifact's package files hold no private file and exactly the protos."""
    if artifact.suffix == ".whl":
        with zipfile.ZipFile(artifact) as zf:
            names = zf.namelist()
    else:
        with tarfile.open(artifact) as tf:
            # An sdist's members sit under "<name>-<version>/".
            names = [m.name.partition("/")[2] for m in tf.getmembers() if m.isfile()]
    package_files = [n for n in names if n.startswith(f"{PACKAGE}/")]
    private = [n for n in package_files
               if any(is_private_name(part) for part in PurePosixPath(n).parts)]
    generated = sorted(n for n in package_files if is_generated(PurePosixPath(n)))
    problems = []
    if private:
        problems.append(f"ships private files: {', '.join(private)}")
    if generated != sorted(plan.vendored_files):
        problems.append(f"ships generated files {generated}, expected {plan.vendored_files}")
    if problems:
        raise PublishError(f"{artifact.name}: " + "; ".join(problems))


# -- entry point ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/publish.py",
        description="Build the wheel and sdist from a copy of reactor/ with private modules "
        "stripped and only the imported protobuf modules vendored.",
    )
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="where the wheel and sdist go (default: ROOT/dist)")
    parser.add_argument("--check", action="store_true",
                        help="only the private-import and protobuf checks; no copy, no build")
    parser.add_argument("--no-isolation", action="store_true",
                        help="build with this environment's setuptools (>=77) instead of a "
                        "fresh isolated one; for offline machines")
    parser.add_argument("--keep-stage", action="store_true",
                        help="keep the staged copy and print where it is")
    parser.add_argument("--root", type=Path, default=ROOT, metavar="DIR",
                        help="the checkout to publish (default: this tool's repository)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show build's output")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    out: Path = (args.out or root / "dist").resolve()

    try:
        plan = make_plan(root)
        report(plan)
        message = failure_message(plan)
        if message:
            print(message, file=sys.stderr)
            return 1
        if args.check:
            print("check: ok (no public module imports a private one; protobuf modules found)")
            return 0
        extra = check_build_tools(args.no_isolation)
        tmp = Path(tempfile.mkdtemp(prefix="reactor-publish-"))
        try:
            staged = tmp / "src"
            stage(plan, staged)
            artifacts = build(plan, staged, out, extra, args.verbose)
            if not artifacts:
                raise PublishError(f"`python -m build` succeeded but left nothing in {out}")
            for artifact in artifacts:
                verify_artifact(plan, artifact)
        finally:
            if args.keep_stage:
                print(f"staged copy kept in {tmp / 'src'}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    except EnvironmentProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("built (verified: no private files, exactly the vendored protobuf files):")
    for artifact in artifacts:
        print(f"  {artifact}  ({artifact.stat().st_size // 1024} KiB)")
    print(f"next: inspect them, then `make upload` (see docs/releasing.md); out: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
