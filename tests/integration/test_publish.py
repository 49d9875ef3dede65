"""tools/publish.py: the wheel ships no private code, exactly the imported protobuf modules,
installs into a fresh virtual environment, and a public→private import stops the release.

The expected protobuf set is computed here with plain regular expressions over the source
text, independently of the tool's ``ast`` scan.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path, PurePosixPath

import pytest

import reactor
from reactor.config import EXAMPLE_CONFIGS
from reactor.control.rundir import RunDir
from reactor.runtime.stats import alive as pid_alive

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "publish.py"
DUNDERS = {"__init__.py", "__main__.py"}


def run_publish(*args: str | Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def is_private_path(rel: str) -> bool:
    return any(p.startswith("_") and p not in DUNDERS for p in PurePosixPath(rel).parts)


def package_files(artifact: Path) -> list[str]:
    """Files under reactor/ in a wheel or an sdist (the sdist's top folder removed)."""
    if artifact.suffix == ".whl":
        with zipfile.ZipFile(artifact) as zf:
            names = zf.namelist()
    else:
        with tarfile.open(artifact) as tf:
            names = [m.name.partition("/")[2] for m in tf.getmembers() if m.isfile()]
    return sorted(n for n in names if n.startswith("reactor/"))


def license_text(artifact: Path) -> str | None:
    """The LICENSE a wheel (in its .dist-info) or an sdist (at its top) carries."""
    if artifact.suffix == ".whl":
        with zipfile.ZipFile(artifact) as zf:
            names = [n for n in zf.namelist()
                     if re.fullmatch(r"[^/]+\.dist-info/licenses/LICENSE", n)]
            return zf.read(names[0]).decode() if names else None
    with tarfile.open(artifact) as tf:
        members = [m for m in tf.getmembers() if re.fullmatch(r"[^/]+/LICENSE", m.name)]
        handle = tf.extractfile(members[0]) if members else None
        return handle.read().decode() if handle else None


def generated_in(files: list[str]) -> set[str]:
    return {n for n in files if re.fullmatch(r"reactor/proto/[^/]+(_pb2\.pyi?|\.proto)", n)}


PB2_FROM = re.compile(r"^\s*from\s+reactor\.proto\s+import\s+\(?([^)#\n]*)", re.MULTILINE)
PB2_DOTTED = re.compile(r"^\s*(?:from|import)\s+reactor\.proto\.(\w+_pb2)\b", re.MULTILINE)
PB2_RELATIVE = re.compile(r"^\s*from\s+(\.+)(proto)?\s+import\s+\(?([^)#\n]*)", re.MULTILINE)


def pb2_imports(path: Path, root: Path) -> set[str]:
    """``x_pb2`` names a source file imports, by regex (one-line import forms)."""
    text = path.read_text(encoding="utf-8")
    found = set(PB2_DOTTED.findall(text))
    for names in PB2_FROM.findall(text):
        found.update(re.findall(r"\b(\w+_pb2)\b", names))
    rel_pkg = path.parent.relative_to(root).parts  # e.g. ("reactor", "proto")
    for dots, proto, names in PB2_RELATIVE.findall(text):
        target = rel_pkg[: len(rel_pkg) - (len(dots) - 1)] + (("proto",) if proto else ())
        if target == ("reactor", "proto"):
            found.update(re.findall(r"\b(\w+_pb2)\b", names))
    return found


def expected_generated(root: Path) -> set[str]:
    """The generated files a release of ``root`` should ship, found by grepping its source."""
    proto_dir = root / "reactor" / "proto"
    wanted: set[str] = set()
    for path in (root / "reactor").rglob("*.py*"):
        rel = path.relative_to(root).as_posix()
        if path.suffix not in (".py", ".pyi") or "__pycache__" in rel or is_private_path(rel):
            continue
        if path.parent == proto_dir and path.stem.endswith("_pb2"):
            continue  # generated modules count only when something public imports them
        wanted |= pb2_imports(path, root)
    todo = list(wanted)
    while todo:  # generated modules import each other; so do their .proto files
        name = todo.pop()
        deps: set[str] = set()
        for suffix in (".py", ".pyi"):
            if (proto_dir / f"{name}{suffix}").exists():
                deps |= pb2_imports(proto_dir / f"{name}{suffix}", root)
        proto = proto_dir / f"{name.removesuffix('_pb2')}.proto"
        if proto.exists():
            for target in re.findall(r'^import\s+"reactor/proto/(\w+)\.proto"', proto.read_text(),
                                     re.MULTILINE):
                deps.add(f"{target}_pb2")
        for dep in deps - wanted:
            wanted.add(dep)
            todo.append(dep)
    files = set()
    for name in wanted:
        for file in (f"{name}.py", f"{name}.pyi", f"{name.removesuffix('_pb2')}.proto"):
            if (proto_dir / file).exists():
                files.add(f"reactor/proto/{file}")
    return files


def copy_checkout(dest: Path) -> Path:
    """A scratch copy of what the tool reads, so a test can break it without touching the repo."""
    shutil.copytree(REPO / "reactor", dest / "reactor",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    return dest


def write(root: Path, rel: str, text: str = "") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# -- the real repository -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The real repo published into a temporary dist/ (skips while it has a private import)."""
    out = tmp_path_factory.mktemp("dist")
    # A wheel built under the distribution's former name must not survive into `make upload`.
    (out / "reactor-0.0.9-py3-none-any.whl").write_text("stale")
    r = run_publish("--out", out)
    if r.returncode == 1 and "imports private module" in r.stderr:
        offenders = [ln.strip() for ln in r.stderr.splitlines() if "imports private module" in ln]
        pytest.skip("the repository has public->private imports, so it cannot be released yet: "
                    + "; ".join(offenders))
    assert r.returncode == 0, f"publish failed:\n{r.stdout}\n{r.stderr}"
    return out, r.stdout


def test_real_wheel_ships_no_private_files_and_exactly_the_imported_protos(
    real_release: tuple[Path, str],
) -> None:
    out, stdout = real_release
    wheels, sdists = list(out.glob("reactor_live-*.whl")), list(out.glob("reactor_live-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    assert sorted(p.name for p in out.iterdir()) == sorted([wheels[0].name, sdists[0].name])
    assert f"removed old artifact {out / 'reactor-0.0.9-py3-none-any.whl'}" in stdout
    assert stdout.startswith(f"publish: reactor-live {reactor.__version__} ")
    expected = expected_generated(REPO)
    assert expected, "the public source imports no generated protobuf module?"
    examples = sorted(f"reactor/examples/configs/{p.name}" for p in EXAMPLE_CONFIGS.glob("*.yaml"))
    assert examples
    for artifact in (wheels[0], sdists[0]):
        files = package_files(artifact)
        assert [f for f in files if is_private_path(f)] == [], artifact.name
        assert [f for f in files if f.startswith("reactor/examples/configs/")] == examples
        assert license_text(artifact) == (REPO / "LICENSE").read_text(), artifact.name
        assert "reactor/__init__.py" in files and "reactor/cli.py" in files
        assert generated_in(files) == expected, artifact.name
    for path in sorted((REPO / "reactor").rglob("_*")):
        if path.name not in DUNDERS and path.name != "__pycache__":
            assert path.relative_to(REPO).as_posix() in stdout  # reported as stripped


def test_real_wheel_installs_into_a_fresh_venv_and_the_cli_runs(
    real_release: tuple[Path, str], tmp_path: Path,
) -> None:
    out, _ = real_release
    wheel = next(out.glob("reactor_live-*.whl"))
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSAFEPATH")}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    py = venv / "bin" / "python"
    started = time.monotonic()
    r = subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(wheel)],
                       capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert r.returncode == 0, f"pip install failed:\n{r.stdout}\n{r.stderr}"
    print(f"pip install of the wheel and its dependencies: {time.monotonic() - started:.1f}s")

    def run(*args: str) -> str:
        # cwd outside the repo and no PYTHONPATH: only the installed wheel can be imported.
        r = subprocess.run([str(py), *args], capture_output=True, text=True, timeout=60,
                           env=env, cwd=tmp_path)
        assert r.returncode == 0, f"{args} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        return r.stdout

    where = run("-c", "import reactor, reactor.proto.worker_pb2; print(reactor.__file__)")
    assert Path(where.strip()).is_relative_to(venv), where
    assert "usage: reactor" in run("-m", "reactor.cli", "--help")
    config = tmp_path / "pattern.yaml"
    shutil.copy2(REPO / "configs" / "pattern.yaml", config)
    assert f"{config}: ok — model TestPattern" in run("-m", "reactor.cli", "config", "check",
                                                    str(config))
    assert '"commands"' in run("-m", "reactor.cli", "schema")
    # The README's examples, by name, from the wheel alone (no configs/ folder here).
    assert "brightness: ok — model Brightness" in run("-m", "reactor.cli", "config", "check",
                                                    "brightness")
    listed = run("-m", "reactor.cli", "init", "--list")
    assert "pattern-audio" in listed and "segment" in listed
    # A model's stack that pins protobuf<5 installs beside it: the segment extra, MediaPipe
    # 0.10 (its weights in its wheel) with protobuf<5 and numpy<2. The control plane and
    # status work on that runtime, and the example model runs from a file.
    started = time.monotonic()
    r = subprocess.run([str(py), "-m", "pip", "install", "--quiet", f"{wheel}[segment]"],
                       capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert r.returncode == 0, f"pip install [segment] failed:\n{r.stdout}\n{r.stderr}"
    print(f"pip install of the segment extra: {time.monotonic() - started:.1f}s")
    old = json.loads(run("-c", OLD_PROTOBUF_CHECK))
    assert old["protobuf"].startswith("4."), old
    run("-c", SEGMENT_CLIP, str(tmp_path / "in.mp4"))
    (tmp_path / "commands.jsonl").write_text(json.dumps(
        {"at_frame": 0, "command": "set_background", "args": {"mode": "color", "r": 0,
                                                               "g": 0, "b": 255}}) + "\n")
    done = run("-m", "reactor.cli", "run", "-c", "segment", "--input", "in.mp4", "--output",
               "out.mp4", "--commands", "commands.jsonl", "--port", "0",
               "--run-dir", str(tmp_path / "run"))
    assert "30 input frames: 30 processed" in done, done
    person, corner = json.loads(run("-c", SEGMENT_READ, "out.mp4", "in.mp4"))
    assert person < 10 and corner > 150, (person, corner)  # the person kept, the wall blue
    # ... and live: a daemon on that install, the clip sent over WHIP, watched over WHEP.
    run_dir = tmp_path / "live"
    try:
        run("-m", "reactor.cli", "daemon", "start", "-c", "segment", "--port", "0",
            "--run-dir", str(run_dir))
        url = json.loads(run("-m", "reactor.cli", "daemon", "status", "--json",
                             "--run-dir", str(run_dir)))["url"]
        live = json.loads(run("-c", SEGMENT_LIVE, url, "in.mp4"))
        assert live["size"] == [1280, 720] and live["blue_after"] is not None, live
        assert live["person"] < 30, live
    finally:
        subprocess.run([str(py), "-m", "reactor.cli", "daemon", "stop", "--run-dir",
                        str(run_dir)], capture_output=True, timeout=60, env=env, cwd=tmp_path)
    assert old["state"] == "running" and old["viewers_detail"][0]["estimate_kbps"] == 900.0, old
    assert "usage: reactor" in run("-m", "reactor.cli", "--help")
    # The console script the wheel declares works too.
    r = subprocess.run([str(venv / "bin" / "reactor"), "--help"], capture_output=True, text=True,
                       timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 0 and "usage: reactor" in r.stdout, r.stderr


# -- every Python the package declares -----------------------------------------------------------

# The versions pyproject.toml's classifiers declare; checked against them below, so a new one
# cannot be declared without being tested.
PYTHONS = ("3.11", "3.12", "3.13")
DISTRIBUTION = "reactor-live"


def declared_pythons() -> set[str]:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    prefix = "Programming Language :: Python :: "
    return {c.removeprefix(prefix) for c in project["classifiers"]
            if re.fullmatch(r"3\.\d+", c.removeprefix(prefix))}


def find_python(version: str) -> str | None:
    """An interpreter of ``version`` on this machine: ``pythonX.Y`` on PATH, else pyenv's."""
    candidates = [shutil.which(f"python{version}"), sys.executable]
    candidates += sorted(str(p) for p in (Path.home() / ".pyenv" / "versions").glob(
        f"{version}.*/bin/python{version}"))
    for candidate in filter(None, candidates):
        r = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode == 0 and r.stdout.strip() == version:
            return candidate
    return None


def clean_env(venv: Path) -> dict[str, str]:
    """The environment of a user who just made ``venv``: nothing points at the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSAFEPATH")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


# Run inside the fresh install: what must be there, from the wheel alone.
PACKAGE_DATA_CHECK = """
import importlib.metadata, importlib.resources, json, sys
import reactor, reactor.proto.control_pb2, reactor.proto.telemetry_pb2, reactor.proto.worker_pb2
from reactor.config import load_config
files = importlib.resources.files("reactor")
data = ["web/index.html", "web/app.js", "web/style.css", "py.typed",
        "proto/control.proto", "proto/telemetry.proto", "proto/worker.proto"]
missing = [name for name in data if not files.joinpath(name).is_file()]
config = load_config(None)
print(json.dumps({"file": reactor.__file__, "version": reactor.__version__,
                  "metadata": importlib.metadata.version(reactor.__distribution__),
                  "python": "%d.%d" % sys.version_info[:2], "missing": missing,
                  "model": config.model_class().__name__}))
"""

# Run after protobuf<5 went in: reactor's messages round-trip, and status reads them.
OLD_PROTOBUF_CHECK = """
import json
import google.protobuf
from reactor.control.status import snapshot_to_dict
from reactor.proto import control_pb2, telemetry_pb2 as tpb, worker_pb2
snap = tpb.Snapshot(state=tpb.DAEMON_STATE_RUNNING, pid=7)
snap.session.viewer_stats.add(id="v1", codec="h264", estimate_kbps=900.0)
reply = control_pb2.Reply(id=1, status=snap)
back = control_pb2.Reply.FromString(reply.SerializeToString())
status = snapshot_to_dict(back.status)
print(json.dumps({"protobuf": google.protobuf.__version__, "state": status["state"],
                  "viewers_detail": status["session"]["viewers_detail"]}))
"""

# Run inside the fresh install with the segment extra: a clip of matplotlib's portrait of
# Grace Hopper (matplotlib comes with MediaPipe) on a grey wall, 30 frames of 1280x720.
SEGMENT_CLIP = """
import sys, av, cv2, numpy as np, matplotlib.cbook as cbook
photo = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
frame = np.full((720, 1280, 3), 90, np.uint8)
frame[60:660, 384:896] = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
with av.open(sys.argv[1], "w") as out:
    stream = out.add_stream("libx264", rate=30, options={"crf": "10"})
    stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
    for _ in range(30):
        out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    out.mux(stream.encode())
"""

# The last frame of the model's output against the input's: how much the person changed
# (the median difference in the middle) and how blue the wall became (the blue channel's gain).
SEGMENT_READ = """
import json, sys, av, numpy as np
def last(path):
    with av.open(path) as f:
        return [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)][-1].astype(int)
out, src = last(sys.argv[1]), last(sys.argv[2])
h, w = out.shape[:2]
middle, wall = np.s_[h // 3: 2 * h // 3, 2 * w // 5: 3 * w // 5], np.s_[: h // 8, : w // 8, 2]
person = np.median(np.abs(out[middle] - src[middle]))
corner = (out[wall] - src[wall]).mean()
print(json.dumps([float(person), float(corner)]))
"""

# Run inside the fresh install, against a daemon running the segment example: send the
# clip over WHIP, watch over WHEP, ask for a blue background after the first frame, and say
# after how many frames the wall turned blue and how much the person changed then.
SEGMENT_LIVE = """
import asyncio, json, sys, av, numpy as np
from reactor.client import Client, file_track

async def main():
    with av.open(sys.argv[2]) as f:
        src = next(f.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    h, w = src.shape[:2]
    middle, wall = np.s_[h // 3: 2 * h // 3, 2 * w // 5: 3 * w // 5], np.s_[: h // 8, : w // 8]
    found = {"size": None, "blue_after": None, "person": None}
    async with Client(sys.argv[1]) as client:
        async with await client.publish(file_track(sys.argv[2], loop=True)):
            async with await client.watch() as viewer:
                for n in range(90):
                    frame = await asyncio.wait_for(viewer.recv(), 30)
                    found["size"] = [frame.width, frame.height]
                    img = frame.to_ndarray(format="rgb24").astype(int)
                    if n == 0:
                        await client.command("set_background", mode="color", r=0, g=0, b=255)
                    elif img[wall][..., 2].mean() > 200 and img[wall][..., 0].mean() < 60:
                        found["blue_after"] = n
                        found["person"] = float(np.median(np.abs(img[middle] - src[middle])))
                        break
    print(json.dumps(found))

asyncio.run(main())
"""

WATCH = """
import asyncio, json, sys
from reactor.client import Client

async def main():
    async with Client(sys.argv[1]) as client, await client.watch() as viewer:
        sizes = []
        for _ in range(5):
            frame = await asyncio.wait_for(viewer.recv(), 30)
            sizes.append([frame.width, frame.height])
        print(json.dumps(sizes))

asyncio.run(main())
"""


def test_the_declared_pythons_are_the_tested_ones() -> None:
    assert declared_pythons() == set(PYTHONS)
    import tomllib

    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == f">={PYTHONS[0]}"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("version", PYTHONS)
def test_wheel_and_sdist_install_and_serve_on_every_declared_python(
    version: str, real_release: tuple[Path, str], tmp_path: Path,
) -> None:
    """On Python ``version``: a fresh venv per artifact (wheel, sdist), installed by pip
    alone; from that install `reactor daemon start` (no config: the packaged default model)
    serves, a WHEP viewer gets 1280x720 frames, and `reactor daemon stop` leaves no process,
    shared-memory segment or socket behind."""
    python = find_python(version)
    if python is None:
        pytest.skip(f"no Python {version} interpreter on this machine (looked for "
                    f"python{version} on PATH and in ~/.pyenv/versions/{version}.*)")
    out, _ = real_release
    stem = DISTRIBUTION.replace("-", "_")
    artifacts = {"wheel": next(out.glob(f"{stem}-*.whl")),
                 "sdist": next(out.glob(f"{stem}-*.tar.gz"))}
    # One wheelhouse for both installs: pip resolves the wheel's declared dependencies
    # (and the sdist's build backend) from the index once, then each venv installs from it
    # alone (--no-index), so a dependency the metadata forgets still fails the install.
    wheelhouse = tmp_path / "wheelhouse"
    builder = tmp_path / "venv-builder"
    subprocess.run([python, "-m", "venv", str(builder)], check=True, timeout=120)
    started = time.monotonic()
    r = subprocess.run([str(builder / "bin" / "python"), "-m", "pip", "wheel", "--quiet",
                        "--wheel-dir", str(wheelhouse), str(artifacts["wheel"]),
                        "setuptools>=77", "wheel"], capture_output=True, text=True,
                       timeout=600, env=clean_env(builder), cwd=tmp_path)
    assert r.returncode == 0, f"pip wheel on {version} failed:\n{r.stderr}"
    timings = [f"wheelhouse {time.monotonic() - started:.0f}s"]
    shutil.rmtree(builder)
    for kind, artifact in artifacts.items():
        venv = tmp_path / f"venv-{kind}"
        subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
        env = clean_env(venv)
        started = time.monotonic()
        r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                            "--no-index", "--find-links", str(wheelhouse), str(artifact)],
                           capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
        assert r.returncode == 0, f"{kind} on {version}: pip install failed:\n{r.stderr}"
        timings.append(f"{kind} {time.monotonic() - started:.0f}s")

        def run(*args: str, timeout: float = 60, env: dict[str, str] = env,
                venv: Path = venv, kind: str = kind) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], capture_output=True,
                                  text=True, timeout=timeout, env=env, cwd=tmp_path)

        version_line = run("reactor", "--version")
        assert version_line.stdout.strip() == f"{DISTRIBUTION} {reactor.__version__}"
        check = run("python", "-c", PACKAGE_DATA_CHECK)
        assert check.returncode == 0, f"{kind} on {version}:\n{check.stderr}"
        found = json.loads(check.stdout)
        assert Path(found["file"]).is_relative_to(venv), found
        assert found["python"] == version and found["missing"] == [], found
        assert found["metadata"] == found["version"], found
        assert found["model"] == "TestPattern", found

        run_dir = Path(f"/tmp/reactor-test-{os.getpid()}-py{version}-{kind}")
        pid = 0
        try:
            start = run("reactor", "daemon", "start", "--port", "0", "--run-dir", str(run_dir),
                        timeout=180)
            assert start.returncode == 0, f"{kind} on {version}:\n{start.stdout}{start.stderr}"
            pid = RunDir(run_dir).read_pid() or 0
            status = json.loads(run("reactor", "daemon", "status", "--json",
                                    "--run-dir", str(run_dir)).stdout)
            assert status["state"] == "running" and status["model"] == "TestPattern", status
            assert (status["distribution"], status["version"]) == (
                DISTRIBUTION, found["version"])
            watched = run("python", "-c", WATCH, status["url"], timeout=120)
            assert watched.returncode == 0, f"{kind} on {version}: WHEP:\n{watched.stderr}"
            assert json.loads(watched.stdout) == [[1280, 720]] * 5
            stop = run("reactor", "daemon", "stop", "--run-dir", str(run_dir), timeout=60)
            assert stop.returncode == 0, stop.stderr
            assert not pid_alive(pid), f"the daemon (pid {pid}) outlived `reactor daemon stop`"
            assert not list(Path("/dev/shm").glob(f"reactor-{pid}-*"))
            assert not (run_dir / "control.sock").exists()
        finally:
            if pid and pid_alive(pid):
                os.kill(pid, 9)
            for seg in Path("/dev/shm").glob(f"reactor-{pid}-*") if pid else ():
                seg.unlink(missing_ok=True)
            shutil.rmtree(run_dir, ignore_errors=True)
    print(f"Python {version}: pip install {', '.join(timings)}")


# -- scratch copies ------------------------------------------------------------------------------


def test_a_public_module_importing_a_private_one_fails_with_file_line_and_module(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path / "checkout")
    write(root, "reactor/_hidden/__init__.py")
    write(root, "reactor/_hidden/core.py", "VALUE = 1\n")
    # Private code may import private code.
    write(root, "reactor/model/_impl.py", "from reactor._hidden import core\n\nhelper = 1\n")
    write(root, "reactor/model/leaky.py", '"""Public, but leans on private modules."""\n'
          "from __future__ import annotations\n"
          "\n"
          "from ._impl import helper\n"               # line 4
          "from . import _impl\n"                     # line 5
          "import reactor._hidden.core\n"             # line 6
          "\n"
          "def later() -> None:\n"
          "    from reactor._hidden import core\n")   # line 9: lazy imports count too
    # A private *name* from a public module is not a private module.
    write(root, "reactor/model/helpers.py", "def _tidy() -> None:\n    pass\n")
    write(root, "reactor/model/fine.py", "from reactor.model.helpers import _tidy\n")

    out = tmp_path / "dist"
    for args in (("--check",), ("--out", out)):
        r = run_publish("--root", root, *args)
        assert r.returncode == 1, f"{args}: expected failure:\n{r.stdout}\n{r.stderr}"
        err = r.stderr
        assert "import(s) of private modules from public code" in err
        assert ("reactor/model/leaky.py:4: imports private module reactor.model._impl "
                "(reactor/model/_impl.py)") in err
        assert "reactor/model/leaky.py:5: imports private module reactor.model._impl" in err
        assert ("reactor/model/leaky.py:6: imports private module reactor._hidden.core "
                "(reactor/_hidden/core.py)") in err
        assert "reactor/model/leaky.py:9: imports private module reactor._hidden" in err
        assert "fix: make the module public" in err
        assert "fine.py" not in err and "_impl.py:" not in err
    assert not out.exists() or not any(out.iterdir()), "nothing may be built after a failure"


def test_a_version_mismatch_stops_the_release(tmp_path: Path) -> None:
    root = copy_checkout(tmp_path / "checkout")
    pyproject = root / "pyproject.toml"
    # The checkout reads its version from __version__; a static one that differs is caught.
    text, n = re.subn(r'(?m)^dynamic = \["version"\]', 'version = "9.9.9"',
                      pyproject.read_text())
    assert n == 1
    pyproject.write_text(text)
    r = run_publish("--root", root, "--check")
    assert r.returncode == 1
    assert "reactor/__init__.py says __version__ = " in r.stderr
    assert "pyproject.toml says version = '9.9.9'" in r.stderr


def test_strips_private_code_and_vendors_only_imported_protos(tmp_path: Path) -> None:
    """A small package with every case, built for real (offline, with --no-isolation)."""
    root = tmp_path / "mini"
    write(root, "README.md", "mini\n")
    write(root, "pyproject.toml", '[build-system]\nrequires = ["setuptools>=77"]\n'
          'build-backend = "setuptools.build_meta"\n\n'
          '[project]\nname = "reactor"\nversion = "0.0.1"\nreadme = "README.md"\n\n'
          '[tool.setuptools.packages.find]\ninclude = ["reactor*"]\n\n'
          '[tool.setuptools.package-data]\nreactor = ["proto/*.proto", "web/*"]\n')
    write(root, "reactor/__init__.py", "from reactor.proto import a_pb2 as _a\n")
    write(root, "reactor/__main__.py", "import reactor\n")
    write(root, "reactor/sub/__init__.py", "from ..proto import g_pb2\n")
    write(root, "reactor/sub/mod.py", "import reactor.proto.e_pb2\n")
    write(root, "reactor/_internal.py", "from reactor.proto import d_pb2\n")
    write(root, "reactor/_vendor/__init__.py")
    write(root, "reactor/_vendor/lib.py", "X = 1\n")
    write(root, "reactor/web/app.js", "// shipped\n")
    write(root, "reactor/web/_draft.js", "// not shipped\n")
    write(root, "reactor/proto/__init__.py")
    pb2 = {
        "a": ("from reactor.proto import b_pb2 as reactor_dot_proto_dot_b__pb2\n",
              'import "reactor/proto/b.proto";\n'),
        "b": ("", ""),
        "c": ("", ""),  # imported by nothing
        "d": ("", ""),  # imported only by private code
        "e": ("", 'import "reactor/proto/f.proto";\n'),  # f: needed by e's .proto
        "f": ("", ""),
        "g": ("", ""),
    }
    for name, (py_imports, proto_imports) in pb2.items():
        write(root, f"reactor/proto/{name}.proto", f'syntax = "proto3";\n{proto_imports}')
        write(root, f"reactor/proto/{name}_pb2.py", py_imports)
        write(root, f"reactor/proto/{name}_pb2.pyi", py_imports)
    assert expected_generated(root) == {
        f"reactor/proto/{n}{s}" for n in "abefg" for s in ("_pb2.py", "_pb2.pyi", ".proto")
    }

    out = tmp_path / "dist"
    write(out, "reactor-0.0.0-py3-none-any.whl", "stale")  # an older build is cleared
    r = run_publish("--root", root, "--out", out, "--no-isolation")
    assert r.returncode == 0, f"publish failed:\n{r.stdout}\n{r.stderr}"
    assert sorted(p.name for p in out.iterdir()) == ["reactor-0.0.1-py3-none-any.whl",
                                                     "reactor-0.0.1.tar.gz"]
    for artifact in out.iterdir():
        files = package_files(artifact)
        assert [f for f in files if is_private_path(f)] == [], artifact.name
        assert {"reactor/__init__.py", "reactor/__main__.py", "reactor/sub/mod.py",
                "reactor/web/app.js"} <= set(files), artifact.name
        assert generated_in(files) == expected_generated(root), artifact.name
    for stripped in ("reactor/_internal.py", "reactor/_vendor/", "reactor/web/_draft.js"):
        assert stripped in r.stdout
    assert "reactor/_vendor/lib.py" not in r.stdout  # a private directory is reported once
    for dropped in ("reactor/proto/c.proto", "reactor/proto/d_pb2.py"):
        assert dropped in r.stdout
    for name in ("a_pb2", "b_pb2", "e_pb2", "f_pb2", "g_pb2"):
        assert re.search(rf"^  {name}\s", r.stdout, re.MULTILINE), name
