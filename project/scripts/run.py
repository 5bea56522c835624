"""`make run`: API on :8000 (with /docs), worker and beat, until Ctrl-C stops all three."""

from __future__ import annotations

import os
import sys
import time

from devtools.launch import service_stack

from imgproc.config import VAR_DIR, Settings


def main() -> None:
    settings = Settings()
    # Text logs read better in a terminal, so `make run` defaults to them; a LOG_JSON set in
    # the environment or in .env still wins (Settings records which fields it was given).
    if "log_json" not in settings.model_fields_set:
        settings = settings.model_copy(update={"log_json": False})
    port = settings.api_port
    cpus = len(os.sched_getaffinity(0))
    with service_stack(
        settings, port=port, concurrency=cpus, separate_beat=True, logs=VAR_DIR / "logs"
    ) as s:
        print(f"imgproc is running: API {s.base_url}/docs")
        if settings.worker_metrics_port:
            host, mport = settings.worker_metrics_host, settings.worker_metrics_port
            print(f"  worker metrics http://{host}:{mport}/metrics")
        print(f"  logs in {s.logs} (api.log, worker.log, beat.log); Ctrl-C stops everything")
        try:
            while all(c.process is not None and c.process.poll() is None for c in s.children):
                time.sleep(1)
            print("a child process exited; stopping the rest", file=sys.stderr)
        except KeyboardInterrupt:
            print("\nstopping")


if __name__ == "__main__":
    main()
