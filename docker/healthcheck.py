"""HEALTHCHECK of the imgproc image: GET $HEALTHCHECK_URL, healthy on a 2xx answer.

The image has no curl; the standard library is enough. The API checks /healthz, a worker its
metrics endpoint (it answers once the worker process has started), see docker-compose.yml.
"""

import os
import sys
import urllib.request

url = os.environ.get("HEALTHCHECK_URL", "http://127.0.0.1:8000/healthz")
try:
    with urllib.request.urlopen(url, timeout=2) as response:
        sys.exit(0 if 200 <= response.status < 300 else 1)
except OSError as exc:
    sys.exit(f"unhealthy: {url}: {exc}")
