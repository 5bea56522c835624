"""The grader's probe: one more locustfile (no users) that records every request locust counts.

Loaded next to the student's locustfile (`-f locustfile.py,probe.py`). Locust's reports group
requests by name, so they cannot show which item ids the users opened or whether a 500 was
counted as a failure; this listener writes one JSON line per request to $LAB7_PROBE_LOG:
method, name, path, query, status code and whether locust counted it as failed.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit

from locust import events

_log = open(os.environ["LAB7_PROBE_LOG"], "a", buffering=1)  # noqa: SIM115 (open for the run)


@events.request.add_listener
def record(
    request_type: str, name: str, response: Any, exception: Any, url: str = "", **_: Any
) -> None:
    parts = urlsplit(url or "")
    row = {
        "method": request_type,
        "name": name,
        "path": parts.path,
        "query": parts.query,
        "status": getattr(response, "status_code", None),
        "failed": exception is not None,
    }
    _log.write(json.dumps(row) + "\n")
