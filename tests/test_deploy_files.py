"""Static checks of the capstone's deployment files, with the tools a reviewer would run.

No container engine is needed: hadolint on the Dockerfile, Compose v2's own `config` and the
Compose spec's JSON schema on docker-compose.yml, actionlint on the CI workflow, and the
promises the README makes about them (one image, healthchecks, `--scale worker=N`, the labs'
profile, every variable documented in .env.example, a page with no CDN). The stack itself is
built and run in project/tests/deploy/test_stack.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
COMPOSE_BIN = ROOT / ".venv/lib/python3.11/site-packages/compose/docker-compose"
DOCKERFILE = ROOT / "docker" / "imgproc.Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
IMGPROC_SERVICES = {"migrate", "api", "worker", "beat", "flower"}
CAPSTONE = IMGPROC_SERVICES | {"postgres", "redis", "frontend", "prometheus", "grafana"}


def _run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
    )


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    # An empty env file: the check must not depend on a developer's own .env.
    return _run(COMPOSE_BIN, "--env-file", "/dev/null", "-f", COMPOSE_FILE, *args)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    done = _compose("config", "--format", "json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_dockerfile_passes_hadolint() -> None:
    done = _run(BIN / "hadolint", "--failure-threshold", "info", DOCKERFILE)
    assert done.returncode == 0, f"hadolint:\n{done.stdout}{done.stderr}"


def test_dockerfile_is_multi_stage_pinned_non_root_with_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert len(froms) == 2, f"builder + runtime stages expected, found {froms}"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, flags=re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.group(1)), base
    assert "uv sync --frozen" in text
    assert re.search(r"^USER 10001", text, flags=re.M), "the runtime must not run as root"
    assert re.search(r"^HEALTHCHECK .*CMD \[", text, flags=re.M | re.S)
    assert re.search(r'^ENTRYPOINT \["', text, flags=re.M) and re.search(r'^CMD \["', text, re.M)
    assert not re.search(r"(PASSWORD|SECRET|TOKEN)\s*=", text), "no secret in any layer"


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_context() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", "ignore everything, then list what the image copies"
    assert "**/.env" in lines


def test_compose_file_is_valid_for_compose_and_the_spec() -> None:
    done = _compose("config", "-q")
    assert done.returncode == 0, done.stderr
    schema = _run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE_FILE)
    assert schema.returncode == 0, schema.stdout + schema.stderr


def test_the_capstone_stack_and_the_labs_profile(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == CAPSTONE, "plain `docker compose up` runs exactly the capstone"
    labs = _compose("--profile", "labs", "config", "--services")
    assert set(labs.stdout.split()) == CAPSTONE | {"rabbitmq"}, labs.stderr
    # `make services` names them, which starts a profile's service too.
    for name in ("postgres", "redis"):
        assert services[name]["ports"][0]["host_ip"] == "127.0.0.1"


def test_one_image_healthchecks_and_startup_order(config: dict[str, Any]) -> None:
    services = config["services"]
    images = {services[name]["image"] for name in IMGPROC_SERVICES}
    assert len(images) == 1, f"API, worker, beat, migrate and Flower must share one image: {images}"
    for name in ("postgres", "redis", "api", "worker", "flower", "frontend", "prometheus"):
        assert "test" in services[name].get("healthcheck", {}), f"{name} has no healthcheck"
    for name in IMGPROC_SERVICES - {"migrate"}:
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["postgres"]["condition"] == "service_healthy", name
    assert services["frontend"]["depends_on"]["api"]["condition"] == "service_healthy"
    mounts = {v["source"]: v["target"] for v in services["api"]["volumes"]}
    assert mounts.get("imgdata") == "/data"
    assert "pgdata" in {v["source"] for v in services["postgres"]["volumes"]}


def test_workers_scale(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker, (
        "`docker compose up --scale worker=3` needs no fixed name and no published port"
    )
    prometheus = (ROOT / "docker/prometheus/prometheus.yml").read_text()
    assert "dns_sd_configs" in prometheus and "names: [worker]" in prometheus


def test_env_example_documents_every_variable_compose_reads() -> None:
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    documented = set(
        re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    )
    assert used - documented == set(), f"not in .env.example: {sorted(used - documented)}"


def test_ci_workflow_passes_actionlint_and_pushes_only_from_main() -> None:
    workflow = ROOT / ".github" / "workflows" / "ci.yml"
    done = _run(BIN / "actionlint", workflow)
    assert done.returncode == 0, f"actionlint:\n{done.stdout}{done.stderr}"
    text = workflow.read_text()
    assert re.search(r"^  test:", text, re.M) and re.search(r"^  build_push:", text, re.M)
    assert "github.ref == 'refs/heads/main'" in text
    assert "secrets.REGISTRY_PASSWORD" in text
    assert "docker/imgproc.Dockerfile" in text


def test_demo_page_loads_nothing_from_outside() -> None:
    for path in (ROOT / "project" / "frontend").iterdir():
        text = path.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), f"{path.name} loads from outside"
        assert "url(http" not in text and "import(" not in text, path.name
