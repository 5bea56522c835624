"""Lab 4 fixtures: the async service, its database and Redis, and the pricing service.

The database is prepared as for lab 3 (migrations, then the same 100,000 seeded rows from
`shared/testing/seed.py`), so lab 3's tests run here unchanged: labs 1-3 are re-run with the
same points (REGRESSION, see `shared/testing/regression.py`); going async must not change the
API.

The pricing service (`labs/lab04_async/pricing/`) runs as a real HTTP server of its own for
the whole run; the server under test finds it through PRICING_URL. Each test steers the
pricing service through its control API for the items it created (`pricing` fixture), so
tests never see each other's counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.testing.http import not_gradable
from shared.testing.pricing import PricingControl
from shared.testing.seed import seed_items
from shared.testing.server import AppServer, migrate_impl

# The earlier labs whose contract this lab re-runs, and this lab's, which later labs re-run.
REGRESSION = ("lab01_rest", "lab02_db", "lab03_cache")
CONTRACT = ("test_quote.py",)

# What the tests promise the server (see the handout): short enough to keep grading fast.
PRICING_TIMEOUT = 2.0
PRICING_ATTEMPTS = 3
PRICING_BACKOFF = 0.1


@pytest.fixture(scope="session")
def pricing_server(request: pytest.FixtureRequest, lab_dir: Path) -> Iterator[AppServer]:
    """The pricing service, answering at once unless a test's scenario says otherwise."""
    if request.config.getoption("base_url"):
        not_gradable("steers the pricing service the grader starts (a deployment has its own)")
    with AppServer(lab_dir / "pricing", {"LATENCY_MS": "0", "FAILURE_RATE": "0"}) as server:
        yield server


@pytest.fixture(scope="session")
def app_env(
    impl_dir: Path,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    pricing_server: AppServer,
) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": redis_prefix,
        "PRICING_URL": pricing_server.base_url,
        "PRICING_TIMEOUT": str(PRICING_TIMEOUT),
        "PRICING_ATTEMPTS": str(PRICING_ATTEMPTS),
        "PRICING_BACKOFF": str(PRICING_BACKOFF),
    }
    migrate_impl(impl_dir, env)
    seed_items(database_url)
    return env


@pytest.fixture
def pricing(pricing_server: AppServer) -> Iterator[PricingControl]:
    """The pricing service's control API: scenarios and counters per item."""
    with httpx.Client(base_url=pricing_server.base_url, timeout=10) as http:
        yield PricingControl(http)
