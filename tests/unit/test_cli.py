from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import reactor as reactor_pkg
from reactor.cli import build_parser, main, parse_assignments
from reactor.config import EXAMPLE_CONFIGS, load_config
from reactor.daemon.launcher import public_bind_warning


def reactor(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reactor.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=60,
    )


def test_config_check_names_misspelt_key(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("video:\n  heigth: 720\n")
    r = reactor("config", "check", str(p))
    assert r.returncode != 0
    assert "heigth" in r.stderr and str(p) in r.stderr
    assert "Traceback" not in r.stderr


def test_config_check_ok() -> None:
    r = reactor("config", "check", "configs/pattern.yaml", cwd=Path(__file__).parents[2])
    assert r.returncode == 0 and "TestPattern" in r.stdout


def test_schema_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["model"] == "TestPattern"
    assert {c["name"] for c in schema["commands"]} >= {"set_speed", "set_text"}


def test_init_scaffolds_a_model_schema_accepts(tmp_path: Path) -> None:
    r = reactor("init", "cool_model", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    root = tmp_path / "cool_model"
    assert {p.name for p in root.iterdir()} >= {"model.py", "reactor.yaml", "README.md",
                                                "requirements.txt"}
    requirements = [line for line in (root / "requirements.txt").read_text().splitlines()
                    if line and not line.startswith("#")]
    assert requirements == [f"reactor-live>={reactor_pkg.__version__}", "numpy"]
    r = reactor("schema", "-c", str(root / "reactor.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model"] == "CoolModel"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(root / "test_model.py")], capture_output=True, text=True, cwd=root,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    # Without pytest too: what the scaffold's README tells a user who has none.
    r = subprocess.run([sys.executable, str(root / "test_model.py")], capture_output=True,
                       text=True, cwd=root, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "passed: 1 of 1 tests", r.stderr
    again = reactor("init", "cool_model", cwd=tmp_path)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_every_level_has_help() -> None:
    for argv in (["--help"], ["daemon", "--help"], ["daemon", "start", "--help"],
                 ["daemon", "status", "--help"], ["run", "--help"], ["send", "--help"],
                 ["monitor", "--help"], ["config", "check", "--help"], ["init", "--help"]):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        assert exc.value.code == 0


def test_send_assignments_parse_json_else_string() -> None:
    assert parse_assignments(["gain=2", "on=true", "name=bob", "xs=[1,2]"]) == {
        "gain": 2, "on": True, "name": "bob", "xs": [1, 2]
    }


def test_version_names_the_distribution() -> None:
    r = reactor("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"reactor-live {reactor_pkg.__version__}"


@pytest.mark.parametrize("action", [["run"], ["daemon", "start"]])
def test_host_port_and_log_level_override_the_config(action: list[str], tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("server:\n  host: 127.0.0.1\n  port: 8081\nlog:\n  level: warning\n")
    args = build_parser().parse_args(
        [*action, "-c", str(cfg_file), "--host", "::1", "--port", "8082", "--log-level", "DEBUG"]
    )
    from reactor.cli import _with_overrides

    cfg = _with_overrides(load_config(args.config), args)
    assert (cfg.server.host, cfg.server.port, cfg.log.level) == ("::1", 8082, "debug")
    untouched = _with_overrides(load_config(args.config),
                                build_parser().parse_args([*action, "-c", str(cfg_file)]))
    assert (untouched.server.host, untouched.server.port, untouched.log.level) == (
        "127.0.0.1", 8081, "warning")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--host", "example.com", "--host: expected an IP address such as 127.0.0.1, found "
                                  "'example.com'"),
        ("--port", "70000", "--port: Input should be less than or equal to 65535"),
    ],
)
def test_a_bad_host_or_port_is_an_error_naming_the_option(
    option: str, value: str, message: str, tmp_path: Path,
) -> None:
    for action in (["run"], ["daemon", "start"]):
        r = reactor(*action, "-c", "configs/pattern.yaml", option, value,
                    "--run-dir", str(tmp_path / "rd"), cwd=Path(__file__).parents[2])
        assert r.returncode == 1, r.stdout + r.stderr
        assert message in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "rd").exists()  # refused before anything started


def test_an_unknown_log_level_is_refused_listing_the_levels() -> None:
    r = reactor("run", "-c", "configs/pattern.yaml", "--log-level", "loud",
                cwd=Path(__file__).parents[2])
    assert r.returncode == 2
    assert "--log-level" in r.stderr and "'loud'" in r.stderr
    assert "'debug', 'info', 'warning', 'error'" in r.stderr


def test_a_public_host_from_the_command_line_still_needs_a_token(tmp_path: Path) -> None:
    from reactor.cli import _with_overrides

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("server:\n  host: 127.0.0.1\n")
    args = build_parser().parse_args(["run", "-c", str(cfg_file), "--host", "0.0.0.0"])
    warning = public_bind_warning(_with_overrides(load_config(args.config), args))
    assert warning is not None
    assert "server.host is 0.0.0.0" in warning and "Set server.token" in warning
    cfg_file.write_text("server:\n  host: 127.0.0.1\n  token: s3cret-token\n")
    assert public_bind_warning(_with_overrides(load_config(args.config), args)) is None


def test_log_level_in_the_config_is_checked(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("log:\n  level: verbose\n")
    r = reactor("config", "check", str(p))
    assert r.returncode == 1
    assert "log.level" in r.stderr and "'verbose'" in r.stderr


# --- packaged example configs, by name ------------------------------------------------------


def test_a_packaged_example_is_found_by_name_outside_the_checkout(tmp_path: Path) -> None:
    for name in ("brightness", "brightness.yaml"):
        r = reactor("config", "check", name, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "model Brightness (reactor.examples.filters:Brightness)" in r.stdout
    assert load_config("pattern-audio").audio.output


def test_a_file_of_an_examples_name_wins_over_the_example(tmp_path: Path) -> None:
    (tmp_path / "brightness").write_text(
        "model:\n  module: reactor.examples.filters:Identity\n")
    r = reactor("config", "check", "brightness", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "model Identity" in r.stdout


def test_an_unknown_config_name_lists_the_examples_and_the_closest(tmp_path: Path) -> None:
    r = reactor("run", "-c", "brightnes", "--duration", "1", cwd=tmp_path)
    assert r.returncode == 1
    assert "brightnes: config file not found" in r.stderr
    assert "they are: brightness, identity, meter, pattern, pattern-audio" in r.stderr
    assert "did you mean 'brightness'?" in r.stderr
    assert "Traceback" not in r.stderr


def test_init_list_names_every_packaged_example(tmp_path: Path) -> None:
    r = reactor("init", "--list", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    listed = [line.split()[0] for line in r.stdout.splitlines()[1:]]
    assert listed == sorted(p.stem for p in EXAMPLE_CONFIGS.glob("*.yaml"))
    assert listed and "brightness" in listed and "pattern" in listed


def test_init_without_a_name_says_what_it_needs(tmp_path: Path) -> None:
    r = reactor("init", cwd=tmp_path)
    assert r.returncode == 1 and "reactor init needs NAME" in r.stderr and "--list" in r.stderr


def test_the_checkouts_configs_folder_is_the_packaged_examples() -> None:
    root = Path(__file__).parents[2]
    assert (root / "configs").resolve() == EXAMPLE_CONFIGS.resolve()


# --- errors that say what to fix ------------------------------------------------------------

MODELS = '''
import time
from reactor import VideoModel

class Blur(VideoModel):
    def start_session(self, session): pass

class Fails(VideoModel):
    def load(self, config): raise FileNotFoundError("weights.pt: no such file")
    def start_session(self, session): pass

class Hangs(VideoModel):
    def load(self, config): time.sleep(60)
    def start_session(self, session): pass
'''


def _model_folder(tmp_path: Path, spec: str) -> Path:
    (tmp_path / "model.py").write_text(MODELS)
    config = tmp_path / "reactor.yaml"
    config.write_text(f"model:\n  module: {spec}\n")
    return config


def test_a_misspelt_module_names_the_configs_folder_and_the_closest(tmp_path: Path) -> None:
    r = reactor("config", "check", str(_model_folder(tmp_path, "modle:Blur")))
    assert r.returncode == 1
    assert (f"module 'modle' not found: looked for a modle.py or package in {tmp_path} "
            "(the config's folder)") in r.stderr
    assert "(did you mean 'model'?)" in r.stderr


def test_a_misspelt_class_lists_the_modules_video_models(tmp_path: Path) -> None:
    r = reactor("config", "check", str(_model_folder(tmp_path, "model:Blr")))
    assert r.returncode == 1
    assert ("module 'model' has no attribute 'Blr'; its VideoModel classes: Blur, Fails, "
            "Hangs (did you mean 'Blur'?)") in r.stderr


def test_config_check_load_runs_load_and_reports_its_failure(tmp_path: Path) -> None:
    config = _model_folder(tmp_path, "model:Fails")
    assert reactor("config", "check", str(config)).returncode == 0  # import alone passes
    r = reactor("config", "check", "--load", str(config))
    assert r.returncode == 1
    assert "Fails.load() raised FileNotFoundError: weights.pt: no such file" in r.stderr


def test_config_check_load_gives_up_on_a_load_that_hangs(tmp_path: Path) -> None:
    r = reactor("config", "check", "--load", "--timeout", "1",
                str(_model_folder(tmp_path, "model:Hangs")))
    assert r.returncode == 1
    assert "Hangs.load() did not return within 1 s" in r.stderr


def test_config_check_load_says_how_long_load_took(tmp_path: Path) -> None:
    r = reactor("config", "check", "--load", str(_model_folder(tmp_path, "model:Blur")))
    assert r.returncode == 0, r.stderr
    assert "model Blur (model:Blur)" in r.stdout and "load() took 0.0 s" in r.stdout


def test_the_scaffolded_model_allocates_no_frame_per_frame(tmp_path: Path) -> None:
    """The guide says to allocate buffers once; the model `reactor init` writes does. The
    runner keeps every emitted frame, so what the frame loop allocates and frees again is
    the peak's excess over what is held at the end."""
    import importlib.util
    import tracemalloc

    import numpy as np

    from reactor.testing import ModelRunner

    assert reactor("init", "lean", cwd=tmp_path).returncode == 0
    spec = importlib.util.spec_from_file_location("lean_model", tmp_path / "lean" / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runner = ModelRunner(module.Lean, width=640, height=360)
    frame_bytes = 640 * 360 * 3
    runner.run(frames=2)  # buffers made, caches warm
    tracemalloc.start()
    try:
        frames = runner.run(frames=30, commands={10: ("set_color", {"color": "red"})})
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(frames) == 30
    assert peak - current < frame_bytes, f"{(peak - current) / frame_bytes:.1f} frames"
    # And it tints: red from frame 10 on, over a blue-tinted gradient before.
    assert np.mean(frames[20][..., 0]) > np.mean(frames[5][..., 0]) + 50
