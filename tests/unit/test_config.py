from __future__ import annotations

from pathlib import Path

import pytest

from reactor.config import Config, load_config, parse_config
from reactor.errors import ConfigError, ModelLoadError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "reactor.yaml"
    p.write_text(text)
    return p


def test_defaults_are_the_packaged_test_pattern() -> None:
    cfg = load_config(None)
    assert cfg.model.module == "reactor.examples.pattern:TestPattern"
    assert (cfg.video.width, cfg.video.height, cfg.video.fps) == (1280, 720, 30)
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 8081)
    assert cfg.model_class().__name__ == "TestPattern"


def test_every_example_config_validates_and_imports() -> None:
    for path in sorted(Path(__file__).parents[2].joinpath("configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.model_class().name


def test_misspelt_key_names_key_file_and_known_keys(tmp_path: Path) -> None:
    p = write(tmp_path, "video:\n  heigth: 720\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert str(p) in msg and "video.heigth" in msg and "unknown key" in msg and "height" in msg


def test_unknown_top_level_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="vidoe: unknown key at the top level"):
        load_config(write(tmp_path, "vidoe: {}\n"))


def test_wrong_type_names_path_and_found_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "video:\n  fps: fast\n"))
    assert "video.fps" in str(err.value) and "'fast'" in str(err.value)


@pytest.mark.parametrize(
    ("yaml_text", "path"),
    [
        ("video:\n  width: 8\n", "video.width"),
        ("video:\n  height: 721\n", "video.height"),
        ("server:\n  port: 70000\n", "server.port"),
        ("egress:\n  codec: av1\n", "egress.codec"),
        ("device: tpu\n", "device"),
        ("server:\n  host: not-an-ip\n", "server.host"),
        ("session:\n  stall_timeout_s: 0\n", "session.stall_timeout_s"),
        ("model:\n  module: no_colon\n", "model.module"),
    ],
)
def test_out_of_range_values(tmp_path: Path, yaml_text: str, path: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, yaml_text))
    assert path in str(err.value)


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "video: [\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_missing_module() -> None:
    cfg = parse_config({"model": {"module": "no_such_pkg.models:Thing"}})
    with pytest.raises(ModelLoadError, match="module 'no_such_pkg.models' not found"):
        cfg.model_class()


def test_missing_class() -> None:
    cfg = parse_config({"model": {"module": "reactor.examples.pattern:NoSuchModel"}})
    with pytest.raises(ModelLoadError, match="has no attribute 'NoSuchModel'"):
        cfg.model_class()


def test_class_not_a_video_model() -> None:
    cfg = parse_config({"model": {"module": "reactor.config:Config"}})
    with pytest.raises(ModelLoadError, match="not a subclass of reactor.VideoModel"):
        cfg.model_class()


def test_module_that_fails_to_import_reports_the_cause(tmp_path: Path) -> None:
    (tmp_path / "broken_model_mod.py").write_text("import numpy\nraise RuntimeError('boom')\n")
    p = write(tmp_path, "model:\n  module: broken_model_mod:M\n")
    with pytest.raises(ModelLoadError, match="RuntimeError: boom"):
        load_config(p).model_class()


def test_model_next_to_config_imports(tmp_path: Path) -> None:
    (tmp_path / "nextdoor_model.py").write_text(
        "from reactor import VideoModel\nclass M(VideoModel):\n    pass\n"
    )
    cfg = load_config(write(tmp_path, "model:\n  module: nextdoor_model:M\n"))
    assert cfg.model_class().__name__ == "M"


def test_config_is_one_typed_object() -> None:
    cfg = Config.model_validate({})
    assert cfg.frame_shape() == (720, 1280, 3)
    assert cfg.server.is_loopback
