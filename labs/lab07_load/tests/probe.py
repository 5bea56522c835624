"""The grader's probe: one more locustfile (no users) that records every request locust counts.

Loaded next to the student's locustfile (`-f locustfile.py,probe.py`). Locust's reports group
requests by name, so they cannot show which item ids the users opened or whether a 500 was
counted as a failure; this listener writes one JSON line per request to $LAB7_PROBE_LOG:
method, name, path, query, status code, whether locust counted it as failed, and which user
sent it when (the pauses between one user's requests are its think time).
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit

import gevent  # type: ignore[import-untyped]
from locust import events

_log = open(os.environ["LAB7_PROBE_LOG"], "a", buffering=1)  # noqa: SIM115 (open for the run)


@events.request.add_listener
def record(
    request_type: str,
    name: str,
    response: Any,
    exception: Any,
    url: str = "",
    start_time: float = 0.0,
    response_time: float = 0.0,
    **_: Any,
) -> None:
    parts = urlsplit(url or "")
    row = {
        "method": request_type,
        "name": name,
        "path": parts.path,
        "query": parts.query,
        "status": getattr(response, "status_code", None),
        "failed": exception is not None,
        # The event fires in the user's own greenlet: which user, and when (s, ms).
        "user": id(gevent.getcurrent()),
        "start": start_time,
        "ms": response_time,
    }
    _log.write(json.dumps(row) + "\n")
