"""HEALTHCHECK of the imgproc image: healthy when $HEALTHCHECK_URL answers.

- http://...  a GET answered with 2xx: the API's /healthz, a worker's metrics endpoint (served
  once the worker has started), Flower's /healthcheck;
- redis://... beat, which serves nothing: its process (PID 1) is alive and the broker answers.

The image has no curl; the standard library (and the venv's redis client) is enough.
"""

import os
import sys
import urllib.request

url = os.environ.get("HEALTHCHECK_URL", "http://127.0.0.1:8000/healthz")
try:
    if url.startswith("redis://"):
        import redis

        os.kill(1, 0)
        redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping()
        sys.exit(0)
    with urllib.request.urlopen(url, timeout=2) as response:
        sys.exit(0 if 200 <= response.status < 300 else 1)
except Exception as exc:  # any failure is "unhealthy", with the reason in the health log
    sys.exit(f"unhealthy: {url}: {exc}")
