"""`make run` on a shared machine: its own namespace per checkout, busy ports refused, Flower.

`scripts/run.py` is started as `make run` starts it, with free ports; the database it creates
for this checkout (`imgproc_<id>`) is the one it would use every day, so the test leaves it
(empty tables) in place only if it existed before.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest
from devtools.launch import REPO_ROOT, checkout_id, checkout_isolated, free_port, wait_for
from psycopg import sql

from imgproc.config import Settings
from shared.services import database_name

RUN_PY = REPO_ROOT / "project" / "scripts" / "run.py"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "project"), str(REPO_ROOT)])
    env.update(extra)
    return env


def test_each_checkout_gets_its_own_database_prefix_and_queue(tmp_path: Path) -> None:
    base = Settings()
    a = checkout_isolated(base, root=tmp_path / "alice" / "highload")
    b = checkout_isolated(base, root=tmp_path / "bob" / "highload")
    again = checkout_isolated(base, root=tmp_path / "alice" / "highload")
    assert (a.database_url, a.redis_prefix, a.celery_queue) == (
        again.database_url,
        again.redis_prefix,
        again.celery_queue,
    ), "the same checkout must find its own data again"
    assert database_name(a.database_url) != database_name(b.database_url)
    assert a.redis_prefix != b.redis_prefix and a.celery_queue != b.celery_queue
    assert a.redis_prefix.startswith(base.redis_prefix), "REDIS_PREFIX stays the parent"
    assert a.database_url.rsplit("/", 1)[0] == base.database_url.rsplit("/", 1)[0]


def test_a_busy_port_stops_make_run_with_the_port_and_the_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        busy = holder.getsockname()[1]
        done = subprocess.run(
            [sys.executable, str(RUN_PY)],
            cwd=REPO_ROOT,
            env=_env(API_PORT=str(busy), FLOWER_PORT=str(free_port())),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, f"exit {done.returncode}: {done.stdout}{done.stderr}"
    assert f"port {busy} (the API) is already in use" in done.stderr
    assert "Address already in use" in done.stderr, "the bind error itself must be shown"
    assert "is running" not in done.stdout


@pytest.mark.timeout(120)
def test_make_run_starts_flower_and_the_page(tmp_path: Path) -> None:
    api, flower, metrics = free_port(), free_port(), free_port()
    own_db = database_name(checkout_isolated(Settings()).database_url)
    maintenance = Settings().database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(maintenance, autocommit=True) as conn:
        existed = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (own_db,)).fetchone()
    log = (tmp_path / "run.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, str(RUN_PY)],
        cwd=REPO_ROOT,
        env=_env(API_PORT=str(api), FLOWER_PORT=str(flower), WORKER_METRICS_PORT=str(metrics)),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: "imgproc is running" in (tmp_path / "run.log").read_text(),
            timeout=60,
            what="make run to start",
        )
        out = (tmp_path / "run.log").read_text()
        assert f"http://127.0.0.1:{flower}/" in out, out
        assert f"database {own_db}" in out and checkout_id() in out, out
        page = httpx.get(f"http://127.0.0.1:{api}/ui/", timeout=5)
        assert page.status_code == 200 and "imgproc demo" in page.text
        workers: dict[str, object] = {}

        def listed() -> bool:
            nonlocal workers
            workers = httpx.get(f"http://127.0.0.1:{flower}/api/workers", timeout=5).json()
            return bool(workers)

        wait_for(listed, timeout=30, what="Flower listing make run's worker", interval=0.5)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
        log.close()
        if not existed:
            with psycopg.connect(maintenance, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(own_db)
                    )
                )
