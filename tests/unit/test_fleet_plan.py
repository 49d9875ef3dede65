"""reactor fleet's plan: GPU lists, each daemon's port and URL, and the HAProxy config it
writes (checked by HAProxy itself where Debian's haproxy is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from reactor import fleet
from reactor.config import Config
from reactor.errors import ConfigError


def test_gpus_take_all_or_a_list_of_indexes() -> None:
    assert fleet.gpu_indexes("0,2,3") == [0, 2, 3]
    assert fleet.gpu_indexes(" 1 ") == [1]
    with pytest.raises(ConfigError, match=r"'x' is not a GPU index"):
        fleet.gpu_indexes("0,x")
    with pytest.raises(ConfigError, match="GPU 2 is named twice"):
        fleet.gpu_indexes("2,2")


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has GPUs")
def test_all_gpus_on_a_machine_without_one_says_use_count() -> None:
    with pytest.raises(ConfigError, match="no NVIDIA GPU found.*use --count N"):
        fleet.gpu_indexes("all")


def _fleet(tmp_path: Path, cfg: Config, n: int = 3, port: int = 9000) -> fleet.Fleet:
    members = fleet.plan_members(cfg, tmp_path, port=port,
                                 devices=[f"cuda:{i}" for i in range(n)],
                                 public_host="gpu-3.lab.example")
    return fleet.Fleet(str(tmp_path), "reactor.yaml", f"http://gpu-3.lab.example:{port}",
                       cfg.server.host, port, tuple(members))


def test_each_daemon_has_its_own_port_device_run_dir_and_public_url(tmp_path: Path) -> None:
    f = _fleet(tmp_path, Config())
    assert [(m.port, m.device, Path(m.run_dir).name, m.public_url) for m in f.members] == [
        (9001, "cuda:0", "daemon-0", "http://gpu-3.lab.example:9001"),
        (9002, "cuda:1", "daemon-1", "http://gpu-3.lab.example:9002"),
        (9003, "cuda:2", "daemon-2", "http://gpu-3.lab.example:9003"),
    ]
    with pytest.raises(ConfigError, match="out of range; choose a lower --port"):
        fleet.plan_members(Config(), tmp_path, port=65534, devices=["cpu"] * 2,
                           public_host="h")


def test_the_fleet_json_round_trips(tmp_path: Path) -> None:
    f = _fleet(tmp_path, Config())
    f.save()
    assert fleet.Fleet.load(tmp_path) == f
    with pytest.raises(Exception, match="no fleet was started with directory"):
        fleet.Fleet.load(tmp_path / "elsewhere")


def test_the_balancer_checks_readyz_and_retries_a_503_elsewhere(tmp_path: Path) -> None:
    text = fleet.haproxy_config(_fleet(tmp_path, Config()))
    lines = [ln.strip() for ln in text.splitlines()]
    assert "option httpchk GET /readyz" in lines and "http-check expect status 200" in lines
    assert "retry-on 503 conn-failure empty-response" in lines
    assert "option redispatch 1" in lines and "option http-buffer-request" in lines
    servers = [ln for ln in lines if ln.startswith("server ")]
    assert servers == [f"server daemon-{i} 127.0.0.1:{9001 + i} check" for i in range(3)]


@pytest.mark.skipif(shutil.which("haproxy", path="/usr/sbin:/usr/bin") is None,
                    reason="needs Debian's haproxy (apt-get install haproxy)")
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::1"])
def test_haproxy_accepts_the_config_it_is_given(tmp_path: Path, host: str) -> None:
    cfg = Config.model_validate({"server": {"host": host, "token": "t" * 16}})
    path = tmp_path / "haproxy.cfg"
    path.write_text(fleet.haproxy_config(_fleet(tmp_path, cfg)))
    haproxy = shutil.which("haproxy", path="/usr/sbin:/usr/bin")
    assert haproxy is not None
    check = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr + check.stdout


def test_without_haproxy_the_error_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reactor.fleet.balancer.shutil.which", lambda *a, **k: None)
    with pytest.raises(ConfigError, match=r"`haproxy` is not installed: `apt-get install "
                                          r"haproxy`"):
        fleet.haproxy_binary()
