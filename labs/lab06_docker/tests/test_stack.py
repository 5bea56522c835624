"""Task 3: the image built and the compose stack run for real, graded from outside.

The grader copies your folder, writes a `.env` from `.env.example` (plus a secret that must
not reach the image), builds the image, and starts the stack with only the API published, on
a free port (the machine's own PostgreSQL, Redis and RabbitMQ hold the standard ports). Then
it runs the earlier labs' black-box contract tests against the API with `--base-url`.

On the course machines and in CI the engine is podman and the base images (python, postgres,
redis, rabbitmq) are local stand-ins built from Debian packages under the official names (see
docker/podman/README.md); with Docker Desktop the same steps pull the real ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from labs.lab06_docker.tests.conftest import CONTRACT_MODULES
from labs.lab06_docker.tests.engine import MEASURES, REPO_ROOT, Build, Stack, tail

TASK = "3. Build and run"
# The whole module shares one build and one stack; a cold build downloads every dependency.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def image(stack: Stack) -> Build:
    build = stack.build()
    if not build.ok:
        pytest.fail(f"the image does not build: {tail_text(build.output)}", pytrace=False)
    MEASURES["image size"] = f"{stack.image_size_mb(build.tag):.0f} MB"
    cached = sum(cached for _, cached in build.steps())
    MEASURES["first build"] = (
        f"{build.seconds:.1f} s ({cached} of {len(build.steps())} steps from the cache)"
    )
    return build


@pytest.fixture(scope="module")
def running(stack: Stack, image: Build) -> Stack:
    proc = stack.up(image.tag)
    if proc.returncode != 0:
        states = "; ".join(
            f"{s}: {' '.join(map(str, stack.state(s)))}"
            for s in ("db", "redis", "rabbitmq", "migrate", "notifications", "api")
            if stack.compose("ps", "-a", "-q", s).stdout.strip()
        )
        # The containers' states and compose's last lines (its error) first: a summary that
        # shortens the message keeps its start, and compose's progress lines say little.
        pytest.fail(
            f"`docker compose up --wait` failed [{states}]: {tail(proc, 2)}; "
            f"api log: {stack.logs('api')}",
            pytrace=False,
        )
    return stack


def tail_text(text: str, lines: int = 8) -> str:
    return " | ".join(ln.strip() for ln in text.strip().splitlines()[-lines:] if ln.strip())


def compose_exec(stack: Stack, service: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return stack.compose("exec", "-T", service, *cmd, timeout=60)


def psql(stack: Stack, sql: str) -> str:
    env = dict(
        line.split("=", 1)
        for line in (stack.context / ".env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    proc = compose_exec(
        stack, "db", "psql", "-U", env.get("POSTGRES_USER", "postgres"),
        "-d", env.get("POSTGRES_DB", "postgres"), "-tAc", sql,
    )  # fmt: skip
    assert proc.returncode == 0, f"psql in the db container failed: {tail(proc)}"
    return proc.stdout.strip()


# --------------------------------------------------------------------------- the image


@pytest.mark.points(2, task=TASK)
def test_image_builds(stack: Stack, image: Build) -> None:
    size = stack.image_size_mb(image.tag)
    assert size < 1500, (
        f"the image is {size:.0f} MB: a slim base and a multi-stage build keep it far smaller"
    )


@pytest.mark.points(2, task=TASK)
def test_container_user_is_not_root(stack: Stack, image: Build) -> None:
    proc = stack.engine.run("run", "--rm", "--entrypoint", "id", image.tag, "-u", timeout=120)
    assert proc.returncode == 0, f"`id -u` in the image failed: {tail(proc)}"
    assert proc.stdout.strip() != "0", "the image runs as root (uid 0): add a user and USER it"


@pytest.mark.points(2, task=TASK)
def test_no_secret_from_env_file_in_the_image(stack: Stack, image: Build) -> None:
    proc = stack.engine.run(
        "run", "--rm", "--entrypoint", "sh", image.tag, "-c",
        f"find / -xdev -name .env 2>/dev/null; "
        f"grep -rls {stack.canary} / --exclude-dir=proc --exclude-dir=sys 2>/dev/null; true",
        timeout=300,
    )  # fmt: skip
    found = proc.stdout.split()
    assert not found, (
        f"the image contains your .env ({', '.join(found[:3])}): exclude it in .dockerignore "
        "and never COPY it; passwords come in at run time"
    )
    history = stack.engine.run("history", "--no-trunc", image.tag, check=True).stdout
    inspect = stack.engine.run("image", "inspect", image.tag, check=True).stdout
    assert stack.canary not in history + inspect, (
        "a secret from .env is in the image's history or config"
    )


# --------------------------------------------------------------------------- the stack


@pytest.mark.points(3, task=TASK)
def test_stack_starts_with_migrations_first(running: Stack) -> None:
    status, code = running.state("migrate")
    assert status == "exited" and code == 0, (
        f"the migrate service should have run once and exited 0, it is {status} (exit {code}): "
        f"{running.logs('migrate')}"
    )
    tables = psql(
        running,
        "SELECT count(*) FROM information_schema.tables"
        " WHERE table_name IN ('items', 'orders', 'notifications')",
    )
    assert tables == "3", (
        f"after `migrate` the database has {tables} of the tables items, orders, notifications"
    )
    r = httpx.get(f"{running.base_url}/healthz", timeout=10)
    assert r.status_code == 200, f"GET /healthz on the published port answered {r.status_code}"


@pytest.mark.points(1, task=TASK)
def test_api_container_user_is_not_root(running: Stack) -> None:
    proc = compose_exec(running, "api", "id", "-u")
    assert proc.returncode == 0 and proc.stdout.strip() not in ("", "0"), (
        f"the api container runs as root (id -u: {proc.stdout.strip() or tail(proc)})"
    )


@pytest.mark.points(4, task=TASK)
def test_earlier_labs_contract_passes_against_the_stack(running: Stack, tmp_path: Path) -> None:
    """Labs 1-3's black-box contract tests, run with --base-url against the published API."""
    failures: list[str] = []
    passed = 0
    for module in CONTRACT_MODULES:
        report = tmp_path / f"{Path(module).stem}.json"
        proc = subprocess.run(
            [
                sys.executable, "-m", "pytest", module, "--base-url", running.base_url,
                "-p", "labs.lab06_docker.tests.blackbox", "--grade-json", str(report),
                "-q", "-p", "no:cacheprovider", "--no-header", "-rN", "--tb=no",
            ],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        if not report.exists():
            failures.append(f"{module}: no results ({tail(proc, 3)})")
            continue
        for t in json.loads(report.read_text())["tests"]:
            if t["status"] == "passed":
                passed += 1
            elif t["status"] in ("failed", "error"):
                failures.append(f"{t['name']}: {t.get('output', '')}")
    MEASURES["contract tests against the stack"] = f"{passed} passed, {len(failures)} failed"
    assert not failures, (
        f"{len(failures)} contract test(s) fail against the containers: " + "; ".join(failures[:3])
    )
    assert passed >= 20, f"only {passed} contract tests ran against the stack"


@pytest.mark.points(2, task=TASK)
def test_an_order_is_handled_by_the_notifications_container(running: Stack) -> None:
    with httpx.Client(base_url=running.base_url, timeout=15) as http:
        r = http.post("/items", json={"name": f"lab6-{uuid.uuid4().hex[:8]}", "price": 4.5})
        assert r.status_code == 201, f"POST /items answered {r.status_code}: {r.text[:200]}"
        r = http.post("/orders", json={"item_id": r.json()["id"], "quantity": 2})
        assert r.status_code == 201, (
            f"POST /orders answered {r.status_code}: {r.text[:200]} (is RabbitMQ reachable from "
            "the api container, and did the notifications service declare its queue?)"
        )
        order_id = r.json()["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if psql(running, f"SELECT count(*) FROM notifications WHERE order_id = {order_id}") == "1":
            return
        time.sleep(0.5)
    pytest.fail(
        f"order {order_id} got no notification row within 30 s: is the notifications service "
        f"running? Its log: {running.logs('notifications')}",
        pytrace=False,
    )


@pytest.mark.points(2, task=TASK)
def test_data_survives_compose_down_and_up(running: Stack, image: Build) -> None:
    name = f"lab6-keep-{uuid.uuid4().hex[:8]}"
    r = httpx.post(f"{running.base_url}/items", json={"name": name, "price": 1.0}, timeout=15)
    assert r.status_code == 201, f"POST /items answered {r.status_code}"
    item_id = r.json()["id"]
    proc = running.compose("down", "--timeout", "10")
    assert proc.returncode == 0, f"`docker compose down` failed: {tail(proc)}"
    proc = running.up(image.tag)
    assert proc.returncode == 0, f"`docker compose up` after `down` failed: {tail(proc, 4)}"
    r = httpx.get(f"{running.base_url}/items/{item_id}", timeout=15)
    assert r.status_code == 200 and r.json().get("name") == name, (
        f"item {item_id} is gone after `docker compose down` + `up` (GET answered "
        f"{r.status_code}): keep the database in a named volume"
    )


@pytest.mark.points(3, task=TASK)
def test_rebuild_after_a_code_change_reuses_the_dependency_layer(
    stack: Stack, image: Build
) -> None:
    main = stack.context / "app" / "main.py"
    main.write_text(main.read_text() + "\n# changed by the lab 6 grader: one line of code\n")
    rebuild = stack.build()
    assert rebuild.ok, f"the rebuild failed: {tail_text(rebuild.output)}"
    MEASURES["rebuild after a one-line change"] = f"{rebuild.seconds:.1f} s"
    installs = rebuild.install_steps()
    assert installs, "the build output shows no dependency install step (pip install / uv sync)"
    fresh = [step for step, cached in installs if not cached]
    assert not fresh, (
        f"a one-line code change re-ran `{fresh[0][:80]}`: copy only the dependency files "
        "before the install and the code after it, so the install layer comes from the cache"
    )
    code_steps = [s for s, cached in rebuild.steps() if not cached]
    assert code_steps, (
        "the rebuild took everything from the cache: did the code get into the image?"
    )
