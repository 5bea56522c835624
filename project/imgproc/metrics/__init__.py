"""Prometheus metrics of the API (per-app registry) and of the worker (multiprocess)."""
