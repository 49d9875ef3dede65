from __future__ import annotations

import sys
from pathlib import Path

import pytest

from reactor.config import Config, import_model, load_config, parse_config
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


def test_model_import_leaves_sys_path_as_it_was(tmp_path: Path) -> None:
    # The model imports a neighbour of its own while it is imported, as a script would.
    (tmp_path / "pathcheck_helpers.py").write_text("GAIN = 3\n")
    (tmp_path / "pathcheck_model.py").write_text(
        "from pathcheck_helpers import GAIN\nfrom reactor import VideoModel\n"
        "class M(VideoModel):\n    gain = GAIN\n"
    )
    cfg = load_config(write(tmp_path, "model:\n  module: pathcheck_model:M\n"))
    before = list(sys.path)
    model = cfg.model_class()
    assert model.__name__ == "M" and model.gain == 3  # type: ignore[attr-defined]
    assert sys.path == before
    assert str(tmp_path) not in sys.path


def test_import_model_search_path_is_searched_first_and_only_then(tmp_path: Path) -> None:
    (tmp_path / "searched_model.py").write_text(
        "from reactor import VideoModel\nclass M(VideoModel):\n    pass\n"
    )
    with pytest.raises(ModelLoadError, match="module 'searched_model' not found"):
        import_model("searched_model:M")
    before = list(sys.path)
    assert import_model("searched_model:M", search_path=[str(tmp_path)]).__name__ == "M"
    assert sys.path == before


def test_config_is_one_typed_object() -> None:
    cfg = Config.model_validate({})
    assert cfg.frame_shape() == (720, 1280, 3)
    assert cfg.server.is_loopback


# --- server.tls_cert / tls_key ------------------------------------------------------------


def make_pem_pair(folder: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made by openssl as the
    Operations page tells users to."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=test",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls_paths_are_read_from_the_config_folder_and_make_https(tmp_path: Path) -> None:
    make_pem_pair(tmp_path)
    cfg = load_config(write(tmp_path, "server:\n  tls_cert: server.crt\n  tls_key: server.key\n"
                                      "  port: 8443\n"))
    assert cfg.server.tls_cert == str(tmp_path / "server.crt")
    assert cfg.server.tls_key == str(tmp_path / "server.key")
    assert cfg.server.scheme == "https" and cfg.server.url() == "https://127.0.0.1:8443/"
    assert cfg.server.url(9000) == "https://127.0.0.1:9000/"
    assert cfg.ssl_context() is not None
    plain = load_config(None)
    assert plain.server.url() == "http://127.0.0.1:8081/" and plain.ssl_context() is None
    # The supervisor gets the config as JSON: the resolved paths survive the trip.
    again = Config.model_validate_json(cfg.model_dump_json())
    assert again.server.tls_cert == cfg.server.tls_cert and again.ssl_context() is not None


@pytest.mark.parametrize("missing", ["tls_cert", "tls_key"])
def test_a_missing_tls_file_names_the_key_and_the_file(tmp_path: Path, missing: str) -> None:
    make_pem_pair(tmp_path)
    names = {"tls_cert": "server.crt", "tls_key": "server.key"}
    names[missing] = "nowhere.pem"
    text = "".join(f"  {k}: {v}\n" for k, v in names.items())
    p = write(tmp_path, "server:\n" + text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(p) in str(err.value)
    assert f"server.{missing}: file not found: {tmp_path / 'nowhere.pem'}" in str(err.value)


def test_a_key_of_another_certificate_is_refused_naming_both_files(tmp_path: Path) -> None:
    cert, _ = make_pem_pair(tmp_path, "one")
    _, other_key = make_pem_pair(tmp_path, "two")
    p = write(tmp_path, f"server:\n  tls_cert: {cert}\n  tls_key: {other_key}\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert f"server.tls_key: {other_key} does not hold the private key of the certificate" in msg
    assert f"server.tls_cert {cert}" in msg


def test_a_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    _, key = make_pem_pair(tmp_path)
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"server.tls_key: .* or one of them is not PEM"):
        load_config(write(tmp_path, f"server:\n  tls_cert: {junk}\n  tls_key: {key}\n"))


def test_tls_cert_without_tls_key_is_refused(tmp_path: Path) -> None:
    cert, _ = make_pem_pair(tmp_path)
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        load_config(write(tmp_path, f"server:\n  tls_cert: {cert}\n"))


def test_config_check_and_a_refused_start_with_tls(tmp_path: Path) -> None:
    """`reactor config check` prints the https:// URL; `reactor daemon start` with a bad
    key stops before anything starts (no run directory, no pid file)."""
    import subprocess
    import sys

    make_pem_pair(tmp_path)
    good = write(tmp_path, "server:\n  tls_cert: server.crt\n  tls_key: server.key\n")
    r = subprocess.run([sys.executable, "-m", "reactor.cli", "config", "check", str(good)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "https://127.0.0.1:8081/" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  tls_cert: server.crt\n  tls_key: server.crt\n")
    run_dir = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "reactor.cli", "daemon", "start", "-c", str(bad),
                        "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "server.tls_key" in r.stderr and str(tmp_path / "server.crt") in r.stderr
    assert not run_dir.exists()


@pytest.mark.parametrize("url", ["stun:a b.example", "stun:a>b", 'turn:a"b:3478', "stun:a,b",
                                 "turn:t;x.example", "stun:bücher.example"])
def test_an_ice_url_whose_host_is_no_host_is_refused(url: str) -> None:
    # It would also break the Link header the URL is sent to clients in.
    with pytest.raises(ConfigError) as err:
        parse_config({"server": {"ice_servers": [
            {"urls": ["stun:ok.example:3478", url], "username": "u", "credential": "c"}]}},
            "x.yaml")
    assert (f"server.ice_servers.0.urls: {url!r}: the host is not a host name or an IP "
            "address") in str(err.value)


def test_ice_urls_with_names_and_addresses_are_accepted() -> None:
    cfg = parse_config({"server": {"ice_servers": [
        {"urls": ["stun:stun.l.google.com:19302", "stun:[2001:db8::1]:3478",
                  "turn:198.18.0.1:3478?transport=tcp", "turns:turn.example.net"],
         "username": "u", "credential": "c"}]}})
    assert len(cfg.server.ice_servers[0].url_list) == 4


def test_egress_bitrates_default_to_bitrate_kbps_and_must_be_in_order(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "egress:\n  bitrate_kbps: 1200\n"))
    # bitrate_kbps is the most; a default start above it starts at the most.
    assert cfg.egress.top_bitrate_kbps == 1200
    cfg = load_config(write(tmp_path, "egress:\n  max_bitrate_kbps: 6000\n"))
    assert cfg.egress.top_bitrate_kbps == 6000
    p = write(tmp_path, "egress:\n  min_bitrate_kbps: 3000\n  start_bitrate_kbps: 1000\n")
    with pytest.raises(ConfigError, match="min_bitrate_kbps <= start_bitrate_kbps"):
        load_config(p)
