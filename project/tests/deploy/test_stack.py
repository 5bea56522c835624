"""The capstone's compose stack, built and run for real, used through its published ports.

What runs: `docker-compose.yml` through podman's Docker API and Compose v2
(`docker/podman/setup.sh`, shared with lab 6). Nothing can be pulled on the machines we test
on, so the base images are LOCAL STAND-INS built from Debian packages and tagged with the
official names the compose file and the Dockerfile use (python, postgres, redis, nginx,
prometheus; the Dockerfile's pinned python tag is added below as one more alias). Grafana has
no Debian package: this test runs the stack WITHOUT grafana (its dashboards are checked against
a real Prometheus in the observability tests).

Every run has its own compose project name, image tag and free host ports, so several
checkouts on one machine never collide, and it removes its containers, volumes and image tag
at the end, also on failure. It prints the image size, the cold and warm build times and the
time of each stage.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from devtools.launch import free_port, wait_for
from devtools.samples import encode, photo_like, png_bomb
from PIL import Image

from .page_flow import run_page_flow

ROOT = Path(__file__).resolve().parents[3]
SETUP = ROOT / "docker" / "podman" / "setup.sh"
ENV_SH = ROOT / "docker" / "podman" / "env.sh"
# Stand-ins the stack needs (grafana has none; see the module docstring).
STANDINS = ["python", "postgres", "redis", "nginx", "prometheus"]
SERVICES = ["api", "worker", "beat", "flower", "frontend", "prometheus"]
# The Dockerfile pins a patch release; the python stand-in answers to it too.
PINNED_PYTHON = "docker.io/library/python:3.11.13-slim-bookworm"
STANDIN_PYTHON = "docker.io/library/python:3.11-slim-bookworm"
FLOWER_USER, FLOWER_PASSWORD = "admin", "stack-test-secret"
WORKERS = 2
PIXELS = (640, 480)


@dataclass
class Stack:
    project: str
    image: str
    env: dict[str, str]
    ports: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        cmd = [self.env["COMPOSE"], "-p", self.project, "-f", str(ROOT / "docker-compose.yml")]
        done = subprocess.run(
            [*cmd, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            logs = subprocess.run(
                [*cmd, "logs", "--no-color", "--tail", "40"],
                cwd=ROOT,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            raise AssertionError(
                f"compose {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n"
                f"{done.stderr}\n--- service logs ---\n{logs.stdout[-6000:]}"
            )
        return done.stdout + done.stderr


def _podman(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


def _engine_env() -> dict[str, str]:
    """Run the shared set-up (idempotent) and return the environment env.sh exports."""
    if not SETUP.exists():
        pytest.skip(f"{SETUP.relative_to(ROOT)} is missing (lab 6's podman set-up)")
    if os.geteuid() != 0 and shutil.which("podman") is None:
        pytest.skip("podman is missing and the set-up needs root: run docker/podman/setup.sh")
    setup = subprocess.run(
        ["bash", str(SETUP), *STANDINS], capture_output=True, text=True, timeout=1800, check=False
    )
    assert setup.returncode == 0, f"docker/podman/setup.sh failed:\n{setup.stdout}{setup.stderr}"
    printed = subprocess.run(
        ["bash", "-c", f'source "{ENV_SH}" && env -0'],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    env = dict(item.split("=", 1) for item in printed.split("\0") if "=" in item)
    # Always re-tagged, so the pinned name follows the stand-in when setup.sh rebuilds it.
    tagged = _podman("tag", STANDIN_PYTHON, PINNED_PYTHON)
    assert tagged.returncode == 0, f"could not tag the python stand-in: {tagged.stderr}"
    return env


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    started = time.monotonic()
    env = _engine_env()
    run = uuid.uuid4().hex[:8]
    ports = {n: free_port() for n in ("frontend", "flower", "prometheus", "grafana", "pg", "redis")}
    image = f"localhost/hl-imgproc-test:{run}"
    env.update(
        {
            "APP_ENV": "development",
            "IMGPROC_IMAGE": image,
            "FRONTEND_PORT": str(ports["frontend"]),
            "FLOWER_PORT": str(ports["flower"]),
            "PROMETHEUS_PORT": str(ports["prometheus"]),
            "GRAFANA_PORT": str(ports["grafana"]),
            "POSTGRES_PORT": str(ports["pg"]),
            "REDIS_PORT": str(ports["redis"]),
            "POSTGRES_PASSWORD": "stack-test-db",
            "FLOWER_USER": FLOWER_USER,
            "FLOWER_PASSWORD": FLOWER_PASSWORD,
            "GRAFANA_ADMIN_PASSWORD": "stack-test-grafana",
            "WORKER_CONCURRENCY": "1",
        }
    )
    s = Stack(project=f"hl-stack-{run}", image=image, env=env, ports=ports)
    s.timings["engine set-up"] = time.monotonic() - started
    try:
        # Cold: no layer cache (podman's own CLI: a --no-cache build through the Docker API
        # leaves no layers a later build can reuse). Warm: the same through compose, cached.
        t = time.monotonic()
        cold = subprocess.run(
            ["podman", "build", "--no-cache", "--layers", "--format", "docker", "-q",
             "-f", "docker/imgproc.Dockerfile", "-t", image, "."],
            cwd=ROOT, capture_output=True, text=True, timeout=1200, check=False,
        )  # fmt: skip
        assert cold.returncode == 0, f"cold build failed:\n{cold.stdout}{cold.stderr[-4000:]}"
        s.timings["cold build (no layer cache)"] = time.monotonic() - t
        t = time.monotonic()
        s.compose("build", "migrate", timeout=600)
        s.timings["warm build (compose, layer cache)"] = time.monotonic() - t
        t = time.monotonic()
        s.compose(
            "up", "-d", "--wait", "--wait-timeout", "240", "--scale", f"worker={WORKERS}",
            *SERVICES, timeout=420,
        )  # fmt: skip
        s.timings["up until healthy"] = time.monotonic() - t
        yield s
    finally:
        t = time.monotonic()
        s.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)
        _podman("rmi", "--force", image)
        s.timings["down -v"] = time.monotonic() - t
        left = _podman(
            "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={s.project}"
        )
        s.notes.append(f"volumes left after down -v: {left.stdout.split() or 'none'}")
        print(f"\nstack {s.project} (services {', '.join(SERVICES)}; no grafana: no stand-in)")
        for name, seconds in s.timings.items():
            print(f"  {name:<34} {seconds:6.1f} s")
        for note in s.notes:
            print(f"  {note}")


def _submit(client: httpx.Client, op: str, data: bytes, **fields: str) -> httpx.Response:
    return client.post(f"/{op}", files={"file": ("photo.jpg", data, "image/jpeg")}, data=fields)


def _finish(client: httpx.Client, task_id: str) -> dict[str, Any]:
    status: dict[str, Any] = {}

    def final() -> bool:
        nonlocal status
        status = client.get(f"/task-status/{task_id}").json()
        return status["status"] in ("done", "failed")

    wait_for(final, timeout=60, what=f"job {task_id}", interval=0.2)
    return status


@pytest.mark.timeout(1800)
def test_stack_black_box_flow_through_the_frontend(stack: Stack) -> None:
    """Each operation through nginx's published port, pixels checked; repeat; bomb; image."""
    size = _podman("image", "inspect", stack.image, "--format", "{{.Size}}").stdout.strip()
    stack.notes.append(f"image {stack.image}: {int(size) / 1e6:.0f} MB")
    assert int(size) < 1_200_000_000, f"the image grew to {int(size) / 1e6:.0f} MB"
    photo = encode(photo_like(*PIXELS, seed=int(time.time()) % 10_000), "JPEG", quality=90)
    expected = {
        "resize": ({"width": "320"}, (320, 240)),
        "crop": ({"left": "40", "top": "30", "width": "200", "height": "100"}, (200, 100)),
        "grayscale": ({}, PIXELS),
    }
    t = time.monotonic()
    with httpx.Client(base_url=stack.url("frontend"), timeout=30) as client:
        assert client.get("/").status_code == 200, "nginx does not serve the demo page"
        assert "imgproc" in client.get("/docs").text, "/docs is not proxied to the API"
        for op, (fields, want) in expected.items():
            answer = _submit(client, op, photo, **fields)
            assert answer.status_code == 202, f"{op}: {answer.status_code} {answer.text}"
            body = answer.json()
            assert body["result_url"].startswith(stack.url("frontend")), body["result_url"]
            status = _finish(client, body["task_id"])
            assert status["status"] == "done", f"{op}: {status}"
            result = client.get(f"/result/{body['task_id']}")
            assert result.status_code == 200, f"{op}: result {result.status_code}"
            with Image.open(io.BytesIO(result.content)) as im:
                assert im.size == want, f"{op}: got {im.size}, expected {want}"
                if op == "grayscale":
                    assert im.mode == "L", f"grayscale gave mode {im.mode}"
        repeat = _submit(client, "resize", photo, width="320")
        assert repeat.status_code == 200 and repeat.json()["cache_hit"] is True, repeat.text
        assert repeat.headers["X-Cache"] == "HIT"
        bomb = client.post("/resize", files={"file": ("bomb.png", png_bomb())}, data={"width": 10})
        assert bomb.status_code == 422, f"a decompression bomb got {bomb.status_code}"
        assert bomb.json()["error"]["code"] == "too_many_pixels", bomb.text
        assert client.get("/metrics").status_code == 404, "/metrics must not be public"
    stack.timings["black-box flow (3 ops, repeat, bomb)"] = time.monotonic() - t


@pytest.mark.timeout(600)
def test_stack_demo_page_in_chromium(stack: Stack, tmp_path: Path) -> None:
    t = time.monotonic()
    report = run_page_flow(f"{stack.url('frontend')}/", tmp_path, label="stack")
    stack.timings["browser flow"] = time.monotonic() - t
    print("\n".join(["browser steps (stack):", *report.steps]))
    assert len(report.screenshots) == 6


@pytest.mark.timeout(600)
def test_flower_lists_the_workers_and_their_finished_tasks(stack: Stack) -> None:
    auth = (FLOWER_USER, FLOWER_PASSWORD)
    with httpx.Client(base_url=stack.url("flower"), timeout=10, auth=auth) as flower:
        assert httpx.get(f"{stack.url('flower')}/api/workers").status_code == 401, "no auth"
        workers: dict[str, Any] = {}

        def all_workers() -> bool:
            nonlocal workers
            workers = flower.get("/api/workers", params={"refresh": "true"}).json()
            return len(workers) >= WORKERS

        wait_for(all_workers, timeout=60, what=f"Flower listing {WORKERS} workers", interval=1)
        for name, info in workers.items():
            assert "imgproc.process_job" in info.get("registered", []), (name, info)
        tasks: dict[str, Any] = {}

        def finished_jobs() -> bool:
            nonlocal tasks
            tasks = flower.get("/api/tasks", params={"taskname": "imgproc.process_job"}).json()
            succeeded = [t for t in tasks.values() if t["state"] == "SUCCESS"]
            return len(succeeded) >= 3

        wait_for(finished_jobs, timeout=60, what="Flower listing 3 finished jobs", interval=1)
        hosts = {t["worker"] for t in tasks.values()}
        stack.notes.append(f"Flower: workers {sorted(workers)}, jobs ran on {sorted(hosts)}")


@pytest.mark.timeout(600)
def test_prometheus_scrapes_the_api_and_every_worker(stack: Stack) -> None:
    targets: list[dict[str, Any]] = []

    def all_up() -> bool:
        nonlocal targets
        answer = httpx.get(f"{stack.url('prometheus')}/api/v1/targets", timeout=5).json()
        targets = answer["data"]["activeTargets"]
        up = [t for t in targets if t["health"] == "up"]
        jobs = [t["labels"]["job"] for t in up]
        return jobs.count("imgproc-api") >= 1 and jobs.count("imgproc-worker") >= WORKERS

    wait_for(all_up, timeout=90, what="Prometheus: api and every worker up", interval=2)
    query = httpx.get(
        f"{stack.url('prometheus')}/api/v1/query",
        params={"query": "sum(imgproc_jobs_processed_total)"},
        timeout=5,
    ).json()
    stack.notes.append(
        "Prometheus targets: "
        + ", ".join(f"{t['labels']['job']} {t['health']}" for t in targets)
        + f"; jobs processed: {json.dumps(query['data']['result'])[:120]}"
    )


@pytest.mark.timeout(300)
def test_the_image_refuses_placeholder_secrets_outside_development(stack: Stack) -> None:
    refused = _podman(
        "run", "--rm", "-e", "APP_ENV=production", "-e", "FLOWER_PASSWORD=changeme",
        "-e", "POSTGRES_PASSWORD=a-real-one", stack.image, "true",
    )  # fmt: skip
    assert refused.returncode == 78, (refused.returncode, refused.stderr)
    assert "FLOWER_PASSWORD" in refused.stderr and "refusing to start" in refused.stderr
    allowed = _podman("run", "--rm", "-e", "FLOWER_PASSWORD=changeme", stack.image, "true")
    assert allowed.returncode == 0, f"development must only warn: {allowed.stderr}"
    assert "warning: placeholder" in allowed.stderr
