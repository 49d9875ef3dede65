"""deploy/kubernetes/: every overlay renders with `kubectl kustomize` and every object it
renders is valid against the Kubernetes schemas of one pinned release (kubernetes-validate,
offline, strict: no unknown fields); the balancer's HAProxy config and the one-box config of
docs/guide/fleet.md pass `haproxy -c`; the daemon config each overlay ships passes reactor's
own config check. Nothing here runs on a cluster."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from reactor.config import parse_config

ROOT = Path(__file__).parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
#: Every kustomization a user can apply: the base and each overlay.
TARGETS = ["base", "overlays/prometheus-operator", "overlays/host-network", "overlays/turn",
           "overlays/autoscaling"]
#: The Kubernetes release the objects are checked against (kubernetes-validate ships its
#: schemas); the oldest release the manifests promise to work on.
KUBERNETES_VERSION = "1.32"
#: Objects of custom resources (CRDs), which kubernetes-validate has no schema for; their
#: shape is checked by hand below instead.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

KUBECTL = shutil.which("kubectl")
HAPROXY = shutil.which("haproxy")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (it "
                                   "renders the kustomizations: kubectl kustomize)")
needs_haproxy = pytest.mark.skipif(HAPROXY is None,
                                   reason="haproxy is not installed (Debian package haproxy)")


def render(target: str) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    r = subprocess.run([KUBECTL, "kustomize", str(KUBE / target)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, f"kubectl kustomize {target}:\n{r.stderr}"
    return [doc for doc in yaml.safe_load_all(r.stdout) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@needs_kubectl
@pytest.mark.parametrize("target", TARGETS)
def test_every_object_of_every_overlay_is_valid_kubernetes(target: str) -> None:
    # The dev extra has it; make test-proto-range's venv (runtime pins only) does not.
    kubernetes_validate = pytest.importorskip("kubernetes_validate")

    objects = render(target)
    assert objects
    for obj in objects:
        name = f"{target}: {obj['kind']} {obj['metadata']['name']}"
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{name}: {exc.message} at {list(exc.path)}") from None


def mounts_of(container: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container["volumeMounts"]}


@needs_kubectl
@pytest.mark.parametrize("target", TARGETS)
def test_the_fleet_pods_have_one_gpu_probes_and_a_grace_period_longer_than_the_drain(
        target: str) -> None:
    objects = render(target)
    [sts] = by_kind(objects, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The startup probe waits out the model's load.
    cfg = daemon_config(objects)
    startup = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
    assert startup > cfg["model"]["load_timeout_s"]
    # The preStop hook drains, and so does SIGTERM after it; the kubelet's SIGKILL must
    # come after the drain's end.
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["reactor", "daemon", "drain"]
    assert {"name": "REACTOR_RUN_DIR", "value": mounts_of(c)["run"]} in c["env"]
    assert pod["terminationGracePeriodSeconds"] > cfg["session"]["drain_timeout_s"]
    # The daemon reads its config from the ConfigMap and its token secret from the Secret.
    mounts = mounts_of(c)
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_map = volumes["config"]["configMap"]["name"]
    assert config_map in {o["metadata"]["name"] for o in by_kind(objects, "ConfigMap")}
    assert f"--config={mounts['config']}/reactor.yaml" in c["args"]
    secret_dir = mounts["token-secret"]
    assert volumes["token-secret"]["secret"]["secretName"] == "reactor-token"
    assert cfg["server"]["token_secret_file"].startswith(secret_dir + "/")
    # Each pod's public URL is its own name.
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "$(POD_NAME)" in env["PUBLIC_URL"]["value"]
    assert "--public-url=$(PUBLIC_URL)" in c["args"]
    # The headless Service lists busy (not Ready) pods too: their sessions go on.
    [svc] = [s for s in by_kind(objects, "Service") if s["metadata"]["name"] == sts["spec"]
             ["serviceName"]]
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]


def daemon_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [cm] = [o for o in by_kind(objects, "ConfigMap")
            if o["metadata"]["name"].startswith("reactor-config")]
    data: dict[str, Any] = yaml.safe_load(cm["data"]["reactor.yaml"])
    return data


def haproxy_servers(cfg: str, backend: str) -> list[str]:
    section = re.search(rf"^backend {backend}\n(.*?)(?=^\S|\Z)", cfg, re.M | re.S)
    assert section, backend
    return re.findall(r"^\s+server (\S+) ", section.group(1), re.M)


@needs_kubectl
def test_the_balancer_knows_every_pod_the_fleet_can_scale_to() -> None:
    cfg = (KUBE / "balancer" / "haproxy.cfg").read_text()
    objects = render("overlays/autoscaling")
    [sts] = by_kind(objects, "StatefulSet")
    [hpa] = by_kind(objects, "HorizontalPodAutoscaler")
    most = max(sts["spec"]["replicas"], hpa["spec"]["maxReplicas"])
    pods = [f"reactor-{i}" for i in range(most)]
    namespace = sts["metadata"]["namespace"]
    for backend in ("place", "pinned"):
        assert haproxy_servers(cfg, backend)[:most] == pods, backend
    for pod in pods:
        assert f"{pod}.{sts['spec']['serviceName']}.{namespace}.svc.cluster.local:8081" in cfg
        assert f"use-server {pod} if" in cfg


@needs_kubectl
def test_the_service_monitor_scrapes_the_headless_service() -> None:
    # A custom resource: kubernetes-validate has no schema for it, so its few fields are
    # checked against what they must match.
    objects = render("overlays/prometheus-operator")
    [sm] = by_kind(objects, "ServiceMonitor")
    [svc] = [s for s in by_kind(objects, "Service") if s["metadata"]["name"] == "reactor"]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    labels = svc["metadata"]["labels"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [endpoint] = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert daemon_config(objects)["metrics"]["public"] is True  # no token to send


@needs_kubectl
def test_the_turn_overlay_gives_the_daemon_coturns_user() -> None:
    objects = render("overlays/turn")
    [coturn] = [o for o in by_kind(objects, "ConfigMap")
                if o["metadata"]["name"].startswith("coturn-config")]
    conf = coturn["data"]["turnserver.conf"]
    user = re.search(r"^user=([^:\n]+):(\S+)$", conf, re.M)
    assert user
    server = daemon_config(objects)["server"]
    [ice] = server["ice_servers"]
    assert (ice["username"], ice["credential"]) == (user.group(1), user.group(2))
    assert server["ice_transport_policy"] == "relay"


@needs_kubectl
@pytest.mark.parametrize("target", TARGETS)
def test_the_daemon_config_of_every_overlay_passes_reactors_config_check(
        target: str, tmp_path: Path) -> None:
    cfg = daemon_config(render(target))
    # The pod reads the token secret from the Secret mounted at that path; here a file of
    # the same form stands in for the mount (the daemon reads the file at load).
    mounted = Path(cfg["server"]["token_secret_file"])
    assert mounted.is_absolute() and mounted.parent == Path("/etc/reactor/secret"), mounted
    secret = tmp_path / mounted.name
    secret.write_text("s" * 48 + "\n")
    cfg["server"]["token_secret_file"] = str(secret)
    parse_config(cfg, f"{target}: reactor.yaml")


def run_haproxy_check(cfg: Path) -> None:
    assert HAPROXY is not None
    r = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "[WARNING]" not in out and "[ALERT]" not in out, out


@needs_haproxy
def test_haproxy_accepts_the_balancer_config() -> None:
    run_haproxy_check(KUBE / "balancer" / "haproxy.cfg")


@needs_haproxy
def test_haproxy_accepts_the_one_box_config_of_the_fleet_guide(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "guide" / "fleet.md").read_text(encoding="utf-8")
    block = re.search(r'```text title="haproxy.cfg"\n(.*?)```', page, re.S)
    assert block, "docs/guide/fleet.md has no haproxy.cfg block"
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(block.group(1))
    run_haproxy_check(cfg)
