"""API metrics: HTTP by route from prometheus-fastapi-instrumentator, plus cache and jobs."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter
from prometheus_fastapi_instrumentator import Instrumentator


class ApiMetrics:
    """Counters of one app, in the app's own registry (tests build several apps)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.cache_requests = Counter(
            "imgproc_cache_requests_total",
            "Cache lookups by cache (dedup, status) and result (hit, miss, error).",
            ["cache", "result"],
            registry=registry,
        )
        self.jobs_submitted = Counter(
            "imgproc_jobs_submitted_total",
            "Accepted requests by operation; deduplicated=true when an existing job answered.",
            ["operation", "deduplicated"],
            registry=registry,
        )
        self.enqueue_failures = Counter(
            "imgproc_enqueue_failures_total",
            "Jobs saved but not sent to the broker (the reconciler will send them).",
            registry=registry,
        )
        # Protection under overload (overload/): series exist from the start, at 0.
        self.rate_limited = Counter(
            "imgproc_rate_limited_total",
            "Requests refused with 429 by the per-client rate limit, by rule (upload, read).",
            ["rule"],
            registry=registry,
        )
        self.shed = Counter(
            "imgproc_load_shed_total",
            "Uploads refused with 503 because the queue was too long or too old, by reason.",
            ["reason"],
            registry=registry,
        )
        self.unchecked = Counter(
            "imgproc_admission_unchecked_total",
            "Requests let through without a check because Redis (rate_limit) or PostgreSQL"
            " (load) could not be asked: the checks fail open.",
            ["check"],
            registry=registry,
        )
        for rule in ("upload", "read"):
            self.rate_limited.labels(rule=rule)
        for reason in ("queue_depth", "queue_age"):
            self.shed.labels(reason=reason)
        for check in ("rate_limit", "load"):
            self.unchecked.labels(check=check)

    def observe_cache(self, cache: str, result: str) -> None:
        self.cache_requests.labels(cache=cache, result=result).inc()


def instrument(app: FastAPI, registry: CollectorRegistry) -> None:
    """Count requests and time them by route template; serve everything at /metrics."""
    Instrumentator(
        registry=registry,
        should_group_status_codes=False,
        excluded_handlers=["/metrics", "/healthz"],
    ).instrument(app, latency_lowr_buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)).expose(
        app, include_in_schema=False
    )
