"""The fleet keys of the server section: public_url, ice_port_range, token secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reactor.cli import main
from reactor.config import load_config, parse_config
from reactor.errors import ConfigError
from tests.support.daemon import run_cli


def server_error(**server: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config({"server": server})
    return str(info.value)


def test_public_url_is_normalised_to_end_in_a_slash() -> None:
    cfg = parse_config({"server": {"public_url": "https://gpu-3.lab.example:8443"}})
    assert cfg.server.public_url == "https://gpu-3.lab.example:8443/"
    assert parse_config({}).server.public_url is None


@pytest.mark.parametrize("url, says", [
    ("ftp://gpu-3", "http:// or https://"),
    ("gpu-3:8443", "http:// or https://"),
    ("https://gpu-3/?x=1", "no query"),
    ("https://gpu-3/#top", "no query or fragment"),
    ("https://user:pw@gpu-3/", "no user name"),
    ("https://gpu-3:99999", "not a URL"),
    ("https://", "no host"),
])
def test_public_url_refusals_name_the_key(url: str, says: str) -> None:
    text = server_error(public_url=url)
    assert "server.public_url" in text and says in text


def test_public_url_from_the_command_line_names_the_option() -> None:
    # One config for every pod of a StatefulSet: each pod's own URL on its command line.
    cfg = parse_config({}).with_overrides(public_url="http://reactor-2.reactor.example.com")
    assert cfg.server.public_url == "http://reactor-2.reactor.example.com/"
    with pytest.raises(ConfigError, match=r"invalid command-line option: --public-url: "
                                          r"'ftp://x': expected an http:// or https://"):
        parse_config({}).with_overrides(public_url="ftp://x")


def test_ice_port_range_too_small_for_the_viewers_names_the_key() -> None:
    text = server_error(max_viewers=8, ice_port_range=[40000, 40007])
    assert "ice_port_range [40000, 40007] holds 8 ports" in text
    assert "need at least 9" in text and "[40000, 40008]" in text
    ok = parse_config({"server": {"max_viewers": 8, "ice_port_range": [40000, 40008]}})
    assert ok.server.ice_port_range == (40000, 40008)


@pytest.mark.parametrize("value", [[40000], [500, 600], [40010, 40000], [40000, 70000],
                                   "40000-40100"])
def test_ice_port_range_form(value: object) -> None:
    assert "server.ice_port_range" in server_error(ice_port_range=value)


def test_config_check_counts_this_machines_addresses(tmp_path: Path) -> None:
    # In a child process: the addresses it counts are the machine's, as the daemon's are,
    # whatever earlier tests did to this process's aioice.
    path = tmp_path / "r.yaml"
    path.write_text("server:\n  max_viewers: 2\n  ice_port_range: [40000, 40002]\n")
    r = run_cli("config", "check", str(path))
    if r.returncode == 0:
        pytest.skip("this machine gathers on one address only")
    m = re.search(r"each peer connection binds one per address it gathers on \((\d+): ",
                  r.stderr)
    assert m, r.stderr
    n = int(m.group(1))
    assert "server.ice_port_range [40000, 40002] holds 3 ports" in r.stderr
    assert f"need {3 * n}" in r.stderr and "server.max_viewers" in r.stderr
    path.write_text(f"server:\n  max_viewers: 2\n  ice_port_range: [40000, {40000 + 3 * n - 1}]\n")
    assert run_cli("config", "check", str(path)).returncode == 0


def test_token_secret_from_a_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("q" * 40 + "\n")
    path = tmp_path / "r.yaml"
    path.write_text("server:\n  token_secret_file: secret\n")
    cfg = load_config(path)
    assert cfg.server.token_secret == "q" * 40
    # The supervisor validates the config again from JSON: it must read no file then.
    again = type(cfg).model_validate_json(cfg.model_dump_json())
    assert again.server.token_secret == "q" * 40


def test_token_secret_refusals(tmp_path: Path) -> None:
    assert "server.token_secret" in server_error(token_secret="short")
    assert "set one, not both" in server_error(token_secret="z" * 40, token_secret_file="f")
    (tmp_path / "secret").write_text("tiny")
    path = tmp_path / "r.yaml"
    path.write_text("server:\n  token_secret_file: secret\n")
    with pytest.raises(ConfigError, match="token_secret_file: .* holds 4 characters"):
        load_config(path)
    path.write_text("server:\n  token_secret_file: missing\n")
    with pytest.raises(ConfigError, match="token_secret_file: cannot read"):
        load_config(path)


def test_reactor_token_mints_from_the_config_or_the_environment(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from reactor.control.tokens import verify

    path = tmp_path / "r.yaml"
    path.write_text("server:\n  token_secret: " + "k" * 40 + "\n")
    assert main(["token", "-c", str(path), "--ttl", "10m", "--scope", "watch,send"]) == 0
    token = capsys.readouterr().out.strip()
    verify("k" * 40, token, "send")
    monkeypatch.setenv("REACTOR_TOKEN_SECRET", "e" * 40)
    assert main(["token", "--scope", "command"]) == 0
    verify("e" * 40, capsys.readouterr().out.strip(), "command")
    monkeypatch.delenv("REACTOR_TOKEN_SECRET")
    assert main(["token"]) == 1
    assert "REACTOR_TOKEN_SECRET" in capsys.readouterr().err
    path.write_text("server: {}\n")
    assert main(["token", "-c", str(path)]) == 1
    assert "server.token_secret" in capsys.readouterr().err
