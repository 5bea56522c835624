"""`make run`: API on :8000 (with /docs and the demo page), worker, beat and Flower, until
Ctrl-C stops them all.

Each checkout runs in its own namespace (database, Redis prefix, queue; see
`devtools.launch.checkout_isolated`), so two checkouts on one machine never take each other's
jobs; a port that is already taken is reported (exit status 1) before anything starts.
"""

from __future__ import annotations

import os
import sys
import time

from devtools.launch import checkout_isolated, service_stack

from imgproc.config import VAR_DIR, Settings

FRONTEND_DIR = VAR_DIR.parent / "frontend"


def main() -> None:
    settings = checkout_isolated(Settings())
    update: dict[str, object] = {"celery_monitoring": True, "frontend_dir": FRONTEND_DIR}
    # Text logs read better in a terminal, so `make run` defaults to them; a LOG_JSON set in
    # the environment or in .env still wins (Settings records which fields it was given).
    if "log_json" not in settings.model_fields_set:
        update["log_json"] = False
    settings = settings.model_copy(update=update)
    port = settings.api_port
    cpus = len(os.sched_getaffinity(0))
    with service_stack(
        settings,
        port=port,
        concurrency=cpus,
        separate_beat=True,
        logs=VAR_DIR / "logs",
        flower_port=settings.flower_port,
    ) as s:
        print(f"imgproc is running: demo page {s.base_url}/ui/   API {s.base_url}/docs")
        print(f"  Flower http://127.0.0.1:{settings.flower_port}/ (the worker and its tasks)")
        if settings.worker_metrics_port:
            host, mport = settings.worker_metrics_host, settings.worker_metrics_port
            print(f"  worker metrics http://{host}:{mport}/metrics")
        db = settings.database_url.rsplit("/", 1)[-1]
        print(
            f"  this checkout's namespace: database {db}, Redis prefix {settings.redis_prefix}, "
            f"queue {settings.celery_queue}, data {settings.data_dir}"
        )
        print(f"  logs in {s.logs} (api, worker, beat, flower .log); Ctrl-C stops everything")
        try:
            while all(c.process is not None and c.process.poll() is None for c in s.children):
                time.sleep(1)
            print("a child process exited; stopping the rest", file=sys.stderr)
        except KeyboardInterrupt:
            print("\nstopping")


if __name__ == "__main__":
    main()
