"""At-least-once processing: crashes, lost broker data, redeliveries, transient errors."""

from __future__ import annotations

import io
import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from devtools.faults import Faults
from devtools.launch import free_port, running, start_api, start_worker, wait_for
from devtools.samples import encode, photo_like
from PIL import Image
from prometheus_client import REGISTRY
from sqlalchemy import Engine, text

from imgproc.config import Settings
from imgproc.db import make_sync_engine
from imgproc.images.schemas import GrayscaleParams, Operation
from imgproc.jobs import repository as repo
from imgproc.jobs.processor import WorkerContext, backoff_delay, run_job
from imgproc.jobs.reconciler import reconcile
from imgproc.jobs.service import request_key
from imgproc.storage.service import ContentStore, sha256_hex

Isolated = Callable[..., Settings]  # the `isolated` fixture


def submit_many(base_url: str, count: int, seed: int) -> list[str]:
    ids = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for i in range(count):
            data = encode(photo_like(64, 48, seed=seed + i), "PNG")
            response = client.post("/grayscale", files={"file": ("a.png", data)})
            assert response.status_code == 202, response.text
            ids.append(response.json()["task_id"])
    return ids


def statuses(engine: Engine, ids: list[str]) -> dict[str, tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, status, attempts FROM imgproc_jobs WHERE id = ANY(:ids)"),
            {"ids": [uuid.UUID(i) for i in ids]},
        ).all()
    return {str(r.id): (r.status, r.attempts) for r in rows}


def wait_one_processing(engine: Engine, ids: list[str], *, what: str) -> str:
    """Wait until a worker has claimed one of `ids`; return that job's id."""
    wait_for(
        lambda: any(st == "processing" for st, _ in statuses(engine, ids).values()),
        timeout=20,
        what=what,
    )
    return next(i for i, (st, _) in statuses(engine, ids).items() if st == "processing")


def wait_all(engine: Engine, ids: list[str], *, timeout: float, what: str) -> None:
    """Wait until every job in `ids` is done."""
    wait_for(
        lambda: all(st == "done" for st, _ in statuses(engine, ids).values()),
        timeout=timeout,
        what=what,
        interval=0.1,
    )


def check_results(base_url: str, ids: list[str]) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for task_id in ids:
            response = client.get(f"/result/{task_id}")
            assert response.status_code == 200, response.text
            out = Image.open(io.BytesIO(response.content))
            assert out.mode == "L" and out.size == (64, 48)


def test_worker_sigkilled_mid_job_finishes_after_restart(
    isolated: Isolated, logs_dir: Path, tmp_path: Path
) -> None:
    s = isolated("crash", processing_timeout_seconds=3)
    engine = make_sync_engine(s.database_url)
    port = free_port()
    with running(lambda: start_api(s, logs_dir / "crash-api.log", port=port)):
        base = f"http://127.0.0.1:{port}"
        first = start_worker(
            s,
            logs_dir / "crash-worker-1.log",
            beat_schedule=tmp_path / "b1",
            faults=Faults(slowdown_seconds=120),
        )
        try:
            ids = submit_many(base, 3, seed=100)
            wait_one_processing(engine, ids, what="the slow worker to start a job")
        finally:
            first.kill()  # SIGKILL to the whole group: main process and pool child
        before = statuses(engine, ids)
        stuck = [i for i, (st, _) in before.items() if st == "processing"]
        assert len(stuck) == 1 and before[stuck[0]][1] == 1, before
        second = start_worker(s, logs_dir / "crash-worker-2.log", beat_schedule=tmp_path / "b2")
        try:
            wait_all(engine, ids, timeout=60, what="every job to finish after the restart")
        finally:
            second.stop()
        after = statuses(engine, ids)
        assert after[stuck[0]] == ("done", 2), "the killed job ran again and finished"
        assert all(after[i] == ("done", 1) for i in ids if i != stuck[0])
        check_results(base, ids)
    engine.dispose()


def pool_children(pid: int) -> list[int]:
    """Child processes of `pid` (a prefork worker's pool), from /proc."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children]


def test_pool_process_killed_message_comes_back_and_job_is_taken_over_at_once(
    isolated: Isolated, logs_dir: Path, tmp_path: Path
) -> None:
    """Late ack + reject on worker lost + prefetch 1, seen from outside.

    The lease (600 s) and the reconciler's timeouts are far longer than this test, so only the
    broker giving the message back can bring the killed job back this fast.
    """
    hold = tmp_path / "hold"
    hold.touch()
    s = isolated(
        "lost",
        processing_timeout_seconds=600,
        queued_timeout_seconds=600,
    )
    engine = make_sync_engine(s.database_url)
    client = redis.Redis.from_url(s.redis_url)
    queue_key = f"{s.redis_prefix}{s.celery_queue}"
    port = free_port()
    try:
        with running(lambda: start_api(s, logs_dir / "lost-api.log", port=port)):
            base = f"http://127.0.0.1:{port}"
            worker = start_worker(
                s,
                logs_dir / "lost-worker.log",
                pool="prefork",
                concurrency=1,
                faults=Faults(hold_file=hold),
            )
            try:
                ids = submit_many(base, 2, seed=300)
                held = wait_one_processing(engine, ids, what="the worker to start a job")
                assert client.llen(queue_key) == 1, (
                    "prefetch 1: a busy worker leaves the next message in the broker"
                )
                (child,) = pool_children(worker.pid)
                os.kill(child, signal.SIGKILL)  # the pool process dies mid-job
                other = next(i for i in ids if i != held)
                # The new pool process takes the next message (the other job) and the killed
                # job's message is back in the broker, behind it.
                wait_for(
                    lambda: (
                        statuses(engine, ids)[other] == ("processing", 1)
                        and client.llen(queue_key) == 1
                    ),
                    timeout=20,
                    what="the killed job's message to come back to the queue",
                    interval=0.1,
                )
                assert statuses(engine, ids)[held] == ("processing", 1)
                hold.unlink()
                wait_all(engine, ids, timeout=30, what="both jobs to finish")
            finally:
                worker.stop()
            after = statuses(engine, ids)
            assert after[held] == ("done", 2), "the killed job ran again, once, and finished"
            assert all(v == ("done", 1) for i, v in after.items() if i != held)
            check_results(base, ids)
    finally:
        client.close()
        engine.dispose()


def test_a_transient_error_in_a_real_worker_is_retried_through_the_broker(
    isolated: Isolated, logs_dir: Path, tmp_path: Path
) -> None:
    s = isolated("retry", retry_backoff_base=0.3, retry_backoff_max=1.0, max_attempts=5)
    engine = make_sync_engine(s.database_url)
    data = encode(photo_like(64, 48, seed=400), "PNG")
    input_path = ContentStore(s.data_dir).path_for(sha256_hex(data))
    port = free_port()
    try:
        with running(lambda: start_api(s, logs_dir / "retry-api.log", port=port)):
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=30) as client:
                response = client.post("/grayscale", files={"file": ("a.png", data)})
            task_id = response.json()["task_id"]
            # The disk "fails": the stored upload cannot be read (IsADirectoryError, an OSError).
            input_path.unlink()
            input_path.mkdir()
            worker = start_worker(s, logs_dir / "retry-worker.log", pool="solo")
            try:
                wait_for(
                    lambda: statuses(engine, [task_id])[task_id][1] >= 2,
                    timeout=20,
                    what="a second attempt, sent by Celery's retry",
                )
                with engine.connect() as conn:
                    error = conn.execute(
                        text("SELECT error FROM imgproc_jobs WHERE id = :id"), {"id": task_id}
                    ).scalar_one()
                assert error.startswith("transient error: IsADirectoryError"), error
                input_path.rmdir()  # the disk is back
                input_path.write_bytes(data)
                wait_for(
                    lambda: statuses(engine, [task_id])[task_id][0] == "done",
                    timeout=20,
                    what="the job to finish after the disk came back",
                )
                assert worker.log_text().count('"job_retry"') >= 1
            finally:
                worker.stop()
            check_results(base, [task_id])
    finally:
        engine.dispose()


def test_broker_data_lost_reconciler_recovers_every_queued_job(
    isolated: Isolated, logs_dir: Path, tmp_path: Path
) -> None:
    s = isolated("loss", queued_timeout_seconds=2)
    engine = make_sync_engine(s.database_url)
    port = free_port()
    client = redis.Redis.from_url(s.redis_url)
    queue_key = f"{s.redis_prefix}{s.celery_queue}"
    try:
        with running(lambda: start_api(s, logs_dir / "loss-api.log", port=port)):
            base = f"http://127.0.0.1:{port}"
            ids = submit_many(base, 20, seed=200)  # no worker yet: all wait in the broker
            assert client.llen(queue_key) == 20
            # What a Redis restart without persistence leaves: nothing under our prefix.
            keys = list(client.scan_iter(match=f"{s.redis_prefix}*"))
            client.delete(*keys)
            assert client.llen(queue_key) == 0
            assert all(st == "queued" for st, _ in statuses(engine, ids).values())
            with httpx.Client(base_url=base, timeout=30) as api:
                early = api.get(f"/result/{ids[0]}")
                assert early.status_code == 409, early.text
                assert early.json()["error"]["code"] == "task_not_ready"
                assert api.get(f"/task-status/{ids[0]}").json()["status"] == "queued"
            worker = start_worker(s, logs_dir / "loss-worker.log", beat_schedule=tmp_path / "b")
            try:
                wait_all(engine, ids, timeout=60, what="the reconciler to re-send every lost job")
                assert "reconciler_requeued" in worker.log_text()
            finally:
                worker.stop()
            assert all(v == ("done", 1) for v in statuses(engine, ids).values())
            check_results(base, ids)
    finally:
        client.close()
        engine.dispose()


def _new_job(ctx: WorkerContext, seed: int) -> str:
    data = encode(photo_like(32, 24, seed=seed), "PNG")
    digest, _ = ctx.store.put(data)
    params = GrayscaleParams()
    job_id = uuid.uuid4()
    with ctx.engine.begin() as conn:
        conn.execute(
            repo.insert_job(
                {
                    "id": job_id,
                    "operation": "grayscale",
                    "params": {},
                    "status": "queued",
                    "request_key": request_key(digest, Operation.GRAYSCALE, params),
                    "input_sha256": digest,
                    "input_format": "PNG",
                    "input_bytes": len(data),
                }
            )
        )
    return str(job_id)


def _row(ctx: WorkerContext, job_id: str) -> Any:
    with ctx.engine.connect() as conn:
        return conn.execute(repo.select_job(uuid.UUID(job_id))).one()


def _retries() -> float:
    return REGISTRY.get_sample_value("imgproc_job_retries_total", {"operation": "grayscale"}) or 0.0


def test_transient_errors_retry_with_backoff_within_a_time_budget(
    isolated: Isolated, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Transient errors do not spend MAX_ATTEMPTS: they are retried until a time budget ends."""
    s = isolated(
        "retry",
        max_attempts=3,
        retry_backoff_base=2,
        retry_backoff_max=60,
        transient_retry_budget_seconds=1.0,
    )
    ctx = WorkerContext.create(s)
    job_id = _new_job(ctx, seed=1)
    retries_before = _retries()

    def broken_disk(digest: str) -> bytes:
        raise OSError("disk hiccup")

    monkeypatch.setattr(ctx.store, "get", broken_disk)
    delays = []
    for attempt in (1, 2, 3, 4):  # more tries than max_attempts: transient ones do not count
        outcome = run_job(ctx, job_id)
        assert outcome.name == "retry" and outcome.retry_in is not None
        delays.append(outcome.retry_in)
        row = _row(ctx, job_id)
        assert row.status == "queued" and row.attempts == attempt
        assert row.transient_retries == attempt, "each transient retry is counted on the job"
        assert "disk hiccup" in row.error, "the transient error is recorded"
    assert 1 <= delays[0] <= 2 and 2 <= delays[1] <= 4 and 4 <= delays[2] <= 8, (
        f"exponential backoff, got {delays}"
    )
    with ctx.engine.connect() as conn:
        ahead = conn.execute(
            text("SELECT enqueued_at > now() FROM imgproc_jobs WHERE id = :id"), {"id": job_id}
        ).scalar_one()
    assert ahead, "the reconciler must wait out the backoff"
    with ctx.engine.begin() as conn:  # the first transient error is now older than the budget
        conn.execute(
            text(
                "UPDATE imgproc_jobs SET retrying_since = now() - interval '2 seconds'"
                " WHERE id = :id"
            ),
            {"id": job_id},
        )
    final = run_job(ctx, job_id)
    row = _row(ctx, job_id)
    assert final.name == "failed" and row.status == "failed" and row.attempts == 5
    assert "gave up after 1 s of transient errors (4 retries)" in row.error, row.error
    assert "disk hiccup" in row.error
    assert _retries() - retries_before == 4
    ctx.close()


def test_unexpected_errors_give_up_after_max_attempts(
    isolated: Isolated, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = isolated("crashy", max_attempts=3, retry_backoff_base=0.1)
    ctx = WorkerContext.create(s)
    job_id = _new_job(ctx, seed=3)

    def bug(digest: str) -> bytes:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ctx.store, "get", bug)
    for attempt in (1, 2):
        assert run_job(ctx, job_id).name == "retry"
        row = _row(ctx, job_id)
        assert row.attempts == attempt and row.transient_retries == 0
    assert run_job(ctx, job_id).name == "failed"
    row = _row(ctx, job_id)
    assert (
        row.status == "failed" and "gave up after 3 attempts" in row.error and "a bug" in row.error
    )
    ctx.close()


def test_a_transient_error_then_success(
    isolated: Isolated, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = isolated("retry_ok", retry_backoff_base=0.1)
    ctx = WorkerContext.create(s)
    job_id = _new_job(ctx, seed=2)
    real_get = ctx.store.get
    failures = iter([OSError("NFS timeout")])

    def flaky(digest: str) -> bytes:
        for exc in failures:
            raise exc
        return real_get(digest)

    monkeypatch.setattr(ctx.store, "get", flaky)
    assert run_job(ctx, job_id).name == "retry"
    assert run_job(ctx, job_id).name == "done"
    row = _row(ctx, job_id)
    assert row.status == "done" and row.attempts == 2 and row.error is None
    assert run_job(ctx, job_id).name == "skipped", "a finished job is never processed again"
    assert _row(ctx, job_id).attempts == 2
    ctx.close()


def test_backoff_grows_exponentially_and_is_capped() -> None:
    for attempt, full in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (10, 60.0)]:
        delay = backoff_delay(attempt, base=1.0, cap=60.0)
        assert full / 2 <= delay <= full, (attempt, delay)


def test_claim_is_exclusive_and_an_expired_lease_is_fenced(isolated: Isolated) -> None:
    ctx = WorkerContext.create(isolated("claim"))
    job_id = uuid.UUID(_new_job(ctx, seed=3))
    first = repo.claim(ctx.db, job_id, lease_seconds=60)
    second = repo.claim(ctx.db, job_id, lease_seconds=60)
    assert first is not None and second is None, "only one worker claims a job"
    assert first.status == "processing" and first.attempts == 1
    with ctx.engine.begin() as conn:  # the first worker stalls past its lease
        conn.execute(
            text(
                "UPDATE imgproc_jobs SET started_at = now() - interval '2 minutes' WHERE id = :id"
            ),
            {"id": job_id},
        )
    taken = repo.claim(ctx.db, job_id, lease_seconds=60)
    assert taken is not None and taken.attempts == 2, "an expired lease can be taken over"
    redelivered = repo.claim(ctx.db, job_id, lease_seconds=60, takeover=True)
    assert redelivered is not None and redelivered.attempts == 3, (
        "a message redelivered because its worker died takes the job over at once"
    )
    done = {"sha256": "0" * 64, "fmt": "PNG", "width": 1, "height": 1}
    stale = repo.mark_done(ctx.db, job_id, 2, **done)  # type: ignore[arg-type]
    fresh = repo.mark_done(ctx.db, job_id, 3, **done)  # type: ignore[arg-type]
    assert stale is None and fresh is not None, "only the current attempt may finish the job"
    assert fresh.status == "done" and fresh.output_sha256 == "0" * 64
    assert repo.claim(ctx.db, job_id, lease_seconds=0, takeover=True) is None, (
        "a finished job is never claimed again, redelivered or not"
    )
    ctx.close()


def test_reconciler_resends_stuck_jobs_and_fails_poison_ones(isolated: Isolated) -> None:
    s = isolated(
        "reconcile", queued_timeout_seconds=5, processing_timeout_seconds=5, max_attempts=3
    )
    ctx = WorkerContext.create(s)
    fresh, lost, stalled, poison = (_new_job(ctx, seed=10 + i) for i in range(4))
    with ctx.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE imgproc_jobs SET enqueued_at = now() - interval '1 minute' WHERE id = :id"
            ),
            {"id": lost},
        )
        for job_id, attempts in ((stalled, 1), (poison, 3)):
            conn.execute(
                text(
                    "UPDATE imgproc_jobs SET status = 'processing', attempts = :n,"
                    " started_at = now() - interval '1 minute',"
                    " enqueued_at = now() - interval '1 minute' WHERE id = :id"
                ),
                {"id": job_id, "n": attempts},
            )
    sent: list[str] = []
    counts = reconcile(ctx, sent.append)
    assert sorted(sent) == sorted([lost, stalled]), "stuck jobs are sent again, fresh ones not"
    assert counts == {"requeued": 2, "failed": 1}
    poisoned = _row(ctx, poison)
    assert poisoned.status == "failed" and "lost 3 times" in poisoned.error
    assert _row(ctx, fresh).status == "queued"
    sent.clear()
    assert reconcile(ctx, sent.append) == {"requeued": 0, "failed": 0}, (
        "a job just re-sent gets a full timeout before the next re-send"
    )
    ctx.close()


def test_database_down_at_claim_is_a_retry(settings: Settings) -> None:
    down = settings.model_copy(
        update={"database_url": "postgresql://postgres@127.0.0.1:1/nowhere", "max_attempts": 3}
    )
    ctx = WorkerContext.create(down)
    outcome = run_job(ctx, str(uuid.uuid4()))
    assert outcome.name == "retry" and outcome.retry_in is not None, (
        "a database that does not answer is transient: the message must be retried, not dropped"
    )
    ctx.close()
