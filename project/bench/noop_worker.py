"""The service's Celery app plus one task that does nothing, for `make bench-project`.

Draining no-op messages with exactly the worker's configuration (late acknowledgement, prefetch 1,
kombu's Redis transport as `imgproc/broker.py` sets it up) shows what Celery itself costs per
message on this machine: the floor under the pipeline's fixed cost per job.
Run as `celery -A noop_worker worker` with project/bench on PYTHONPATH.
"""

from __future__ import annotations

from imgproc.worker import app

NOOP_TASK = "imgproc.bench.noop"


@app.task(name=NOOP_TASK)
def noop(job_id: str) -> None:
    return None
