"""The service's Celery app plus two tasks of Celery alone, for `make bench-project`.

Both run with exactly the worker's configuration (late acknowledgement, prefetch 1, kombu's Redis
transport as `imgproc/broker.py` sets it up), and neither touches the database or the store:

- `noop` does nothing: draining it shows what Celery itself costs per message on this machine,
  the floor under the pipeline's fixed cost per job.
- `plain` does the plain loop's work on one photo (read a file, the same `process_image`, write
  a new file): Celery with no promises kept, so that the pipeline's cost splits into Celery's
  share (this task against the plain loop) and the promises' (floor_worker.py against this).

Run as `celery -A noop_worker worker` with project/bench on PYTHONPATH.
"""

from __future__ import annotations

from pathlib import Path

from imgproc.images.schemas import Operation, parse_params
from imgproc.images.service import process_image
from imgproc.jobs.processor import encode_options
from imgproc.worker import app, settings

NOOP_TASK = "imgproc.bench.noop"
PLAIN_TASK = "imgproc.bench.plain"
options = encode_options(settings)


@app.task(name=NOOP_TASK)
def noop(job_id: str) -> None:
    return None


@app.task(name=PLAIN_TASK)
def plain(source: str, target: str, operation: str, params: dict[str, object]) -> None:
    op = Operation(operation)
    result = process_image(
        Path(source).read_bytes(),
        op,
        parse_params(op, params),
        max_pixels=settings.max_pixels,
        options=options,
    )
    # The finish time is the file's: the bench reads the mtimes (no extra round trip here).
    Path(target).write_bytes(result.data)
