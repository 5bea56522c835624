"""A pytest plugin for grading a deployment: keep only the tests that need nothing but HTTP.

Lab 6 runs earlier labs' contract modules against the containerised API with
`--base-url URL -p labs.lab06_docker.tests.blackbox`. A test that looks behind the API (the
database, Redis keys, a server the grader restarts or reconfigures, the pricing service's
control API, the source code) cannot see inside the containers, so it is deselected here
rather than run against the grader's own services.
"""

from __future__ import annotations

import pytest

NOT_BLACK_BOX = frozenset(
    {
        "db",
        "database_url",
        "redis_client",
        "redis_prefix",
        "redis_url",
        "amqp_url",
        "queue_names",
        "app_server",
        "app_env",
        "impl_dir",
        "no_redis_server",
        "pricing",
        "pricing_server",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        needs = set(getattr(item, "fixturenames", ()))
        (dropped if needs & NOT_BLACK_BOX else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
