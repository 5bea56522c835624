"""The Kubernetes manifests (project/deploy/k8s): schema-valid for one Kubernetes version, plus our
own rules (probes, resources, non-root, graceful shutdown, image = compose's).

Offline: `kubernetes-validate` carries the Kubernetes OpenAPI schemas; no cluster is needed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "project" / "deploy" / "k8s"
COMPOSE = REPO / "docker-compose.yml"
# One Kubernetes version, pinned: its schemas ship inside kubernetes-validate.
KUBERNETES_VERSION = "1.31.0"
VALIDATE = Path(sys.executable).with_name("kubernetes-validate")
# The image the compose file builds (docker/imgproc.Dockerfile), IMGPROC_IMAGE's default there.
AGREED_IMAGE = "highload-course/imgproc:latest"
# Compose services that run the capstone image, and the Kubernetes workload of each.
WORKLOADS = {
    "api": ("Deployment", "imgproc-api"),
    "worker": ("Deployment", "imgproc-worker"),
    "beat": ("Deployment", "imgproc-beat"),
    "migrate": ("Job", "imgproc-migrate"),
}


def kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / "kustomization.yaml").read_text()))


def base_files() -> list[Path]:
    return [K8S / name for name in kustomization()["resources"]]


def documents(paths: list[Path]) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def resources() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path, doc in documents(base_files()):
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in found, f"{path.name}: {key} is defined twice"
        found[key] = doc
    return found


def validate(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VALIDATE), "-k", KUBERNETES_VERSION, "--strict", "--quiet", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc["spec"]["template"]["spec"])


def test_kustomization_lists_every_manifest() -> None:
    listed = {path.name for path in base_files()}
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, f"kustomization.yaml resources {listed} != files {on_disk}"


def test_manifests_match_the_kubernetes_schemas() -> None:
    paths = [*base_files(), *sorted((K8S / "optional").glob("*.yaml"))]
    result = validate(paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_misspelt_field(tmp_path: Path) -> None:
    """--strict catches a field Kubernetes would silently drop (proof the check has teeth)."""
    bad = tmp_path / "api.yaml"
    text = (K8S / "api.yaml").read_text()
    assert "averageUtilization" in text
    bad.write_text(text.replace("averageUtilization", "averageUtilisation"))
    result = validate([bad])
    assert result.returncode != 0 and "averageUtilisation" in result.stdout + result.stderr


def test_every_workload_is_non_root_with_resources() -> None:
    for (kind, name), doc in resources().items():
        if kind not in ("Deployment", "Job"):
            continue
        spec = pod_spec(doc)
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, f"{name}: pod securityContext.runAsNonRoot"
        assert pod_sc.get("runAsUser", 0) > 0, f"{name}: runAsUser must not be root (0)"
        assert spec.get("automountServiceAccountToken") is False, f"{name}: no API token needed"
        for container in spec["containers"]:
            sc = container.get("securityContext", {})
            where = f"{name}/{container['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            res = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(part, {})), f"{where}: {part} cpu+memory"
            # A read-only root needs somewhere to write: /tmp (and /data where files live).
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: /tmp must be a writable volume"


def test_api_probes_healthz_and_readyz() -> None:
    api = resources()[("Deployment", "imgproc-api")]
    (container,) = pod_spec(api)["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port_names["http"] == 8000
    assert "--port" in container["args"] and "8000" in container["args"]


def test_worker_is_probed_on_its_metrics_port_and_shuts_down_warm() -> None:
    worker = resources()[("Deployment", "imgproc-worker")]
    spec = pod_spec(worker)
    (container,) = spec["containers"]
    assert container["livenessProbe"]["httpGet"]["port"] == "metrics"
    config = resources()[("ConfigMap", "imgproc-config")]["data"]
    metrics_port = int(config["WORKER_METRICS_PORT"])
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": metrics_port}
    assert config["WORKER_METRICS_HOST"] == "0.0.0.0", "Prometheus scrapes the pod's address"
    # Celery's warm shutdown lets running jobs finish: the grace period must leave them time.
    assert spec["terminationGracePeriodSeconds"] >= 60
    assert container["args"][:4] == ["celery", "-A", "imgproc.worker", "worker"]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/"), "on the writable scratch volume"


def test_beat_is_a_single_replica_replaced_not_rolled() -> None:
    beat = resources()[("Deployment", "imgproc-beat")]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    hpa_targets = {
        doc["spec"]["scaleTargetRef"]["name"]
        for (kind, _), doc in resources().items()
        if kind == "HorizontalPodAutoscaler"
    }
    assert hpa_targets == {"imgproc-api", "imgproc-worker"}, "beat must never be scaled"


def test_autoscalers_and_disruption_budgets() -> None:
    found = resources()
    api_hpa = found[("HorizontalPodAutoscaler", "imgproc-api")]["spec"]
    assert api_hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert api_hpa["minReplicas"] >= 2, "one API pod is a single point of failure"
    for name in ("imgproc-api", "imgproc-worker"):
        pdb = found[("PodDisruptionBudget", name)]["spec"]
        labels = found[("Deployment", name)]["spec"]["selector"]["matchLabels"]
        assert pdb["selector"]["matchLabels"] == labels, f"{name}: PDB must select the pods"
    optional = yaml.safe_load((K8S / "optional" / "worker-hpa-queue-depth.yaml").read_text())
    assert optional["spec"]["metrics"][0]["external"]["metric"]["name"] == "imgproc_queue_depth"


def test_services_select_their_pods_and_ports_exist() -> None:
    found = resources()
    for (kind, name), svc in found.items():
        if kind != "Service":
            continue
        selector = svc["spec"]["selector"]
        targets = [
            doc
            for (k, _), doc in found.items()
            if k == "Deployment"
            and selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert targets, f"Service {name} selects no Deployment's pods"
        ports = {p["name"] for d in targets for c in pod_spec(d)["containers"] for p in c["ports"]}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {name}: no container port {port}"


def test_configuration_comes_from_the_configmap_and_secret() -> None:
    found = resources()
    secret = found[("Secret", "imgproc-secrets")]
    for value in secret["stringData"].values():
        # Placeholders only: a password in a committed manifest must be the obvious dummy.
        if "@" in value:
            assert "change-me" in value, f"the Secret must hold placeholders only: {value}"
    for kind, name in WORKLOADS.values():
        (container,) = pod_spec(found[(kind, name)])["containers"]
        sources = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
        assert sources == {"imgproc-config", "imgproc-secrets"}, name
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for (kind, _), doc in found.items()
        if kind in ("Deployment", "Job")
        for v in pod_spec(doc).get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    assert claims == {"imgproc-data"} and ("PersistentVolumeClaim", "imgproc-data") in found


def compose_default(value: str) -> str:
    """`${IMGPROC_IMAGE:-name:tag}` -> `name:tag` (what compose runs with no override)."""
    match = re.fullmatch(r"\$\{[A-Z_]+:?-(.+)\}", value)
    return match.group(1) if match else value


def compose_images() -> dict[str, str]:
    """Image of each compose service that runs the capstone (by name), if compose has one."""
    # safe_load resolves the `<<: *imgproc` merge keys, so each service carries its image.
    services = yaml.safe_load(COMPOSE.read_text()).get("services", {})
    return {
        name: compose_default(str(service["image"]))
        for name, service in services.items()
        if name in WORKLOADS and "image" in service
    }


def test_images_are_the_compose_files_images() -> None:
    found = resources()
    images = {
        name: pod_spec(found[key])["containers"][0]["image"] for name, key in WORKLOADS.items()
    }
    from_compose = compose_images()
    for service, image in images.items():
        # Until compose runs the capstone too, both sides use the agreed name.
        expected = from_compose.get(service, AGREED_IMAGE)
        if ":" not in expected.rsplit("/", 1)[-1]:
            expected += ":latest"
        assert image == expected, f"{service}: k8s runs {image}, compose runs {expected}"
    (entry,) = kustomization()["images"]
    assert f"{entry['name']}:{entry['newTag']}" in images.values(), "kustomize names our image"


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_workloads_keep_the_image_entrypoint(kind: str) -> None:
    """`command:` would bypass the image's entrypoint (placeholder-secret check, metrics dir)."""
    for (k, name), doc in resources().items():
        if k == kind:
            for container in pod_spec(doc)["containers"]:
                assert "command" not in container, f"{name}: use args, keep the entrypoint"
