"""Lab 5 fixtures: the shop API, the notifications service, and RabbitMQ seen by the grader.

The database is prepared as in lab 4 (migrations, 100,000 seeded items) and lab 4's pricing
service runs too, so labs 1-4 are re-run on this lab's code with their points (REGRESSION).

Every RabbitMQ name of the run starts with `hl_test.<run id>.` and is deleted at the end.
Three independent set-ups, each with its own QUEUE_PREFIX:

- `main`: the shop API (`app_server`) and the notifications service (`notifications`), both
  talking to RabbitMQ directly; a `spy` queue bound to the exchange keeps a copy of every
  event the API publishes, so the grader can read them;
- `refuse`: a second shop API with no notifications service; the tests shape the broker's
  refusals themselves (a full queue, a missing exchange, no queue at all);
- `outage`: a shop API and a notifications service that reach RabbitMQ through a TCP proxy
  the test cuts and restores, or stalls and resumes (the machine's RabbitMQ is never stopped);
- `race`: two notifications services on one work queue, with nothing in front of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from labs.lab05_queue.tests.rabbit import Names, Notifications, Rabbit
from shared.testing.http import not_gradable
from shared.testing.pricing import PricingControl
from shared.testing.seed import seed_items
from shared.testing.server import REPO_ROOT, AppServer, migrate_impl
from shared.testing.tcp_proxy import TcpProxy

# The earlier labs whose contract this lab re-runs, and this lab's contract for later labs.
REGRESSION = ("lab01_rest", "lab02_db", "lab03_cache", "lab04_async")
CONTRACT = ("test_orders.py",)

# What the tests promise the services (the handout's table): short, to keep grading fast.
PREFETCH = 10
MAX_ATTEMPTS = 3
RETRY_DELAY_MS = 2000
PUBLISH_TIMEOUT = 3.0
QUEUE_MAX_LENGTH = 10_000
PRICING_TIMEOUT = 2.0
PRICING_ATTEMPTS = 3
PRICING_BACKOFF = 0.1
# The extra servers start while the machine may be busy (two gradings at once on 2 cores).
START_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def rabbit(amqp_url: str) -> Iterator[Rabbit]:
    broker = Rabbit(amqp_url)
    try:
        yield broker
    finally:
        broker.close()


def names_for(rabbit: Rabbit, run_id: str, part: str) -> Names:
    names = Names(f"hl_test.{run_id}.{part}.")
    rabbit.forget(names)
    return names


@pytest.fixture(scope="session")
def main_names(rabbit: Rabbit, run_id: str) -> Names:
    return names_for(rabbit, run_id, "main")


@pytest.fixture(scope="session")
def pricing_server(request: pytest.FixtureRequest) -> Iterator[AppServer]:
    """Lab 4's pricing service: the quote endpoint (and lab 4's tests) still need it."""
    if request.config.getoption("base_url"):
        not_gradable("steers the pricing service the grader starts (a deployment has its own)")
    pricing = REPO_ROOT / "labs" / "lab04_async" / "pricing"
    with AppServer(pricing, {"LATENCY_MS": "0", "FAILURE_RATE": "0"}) as server:
        yield server


@pytest.fixture
def pricing(pricing_server: AppServer) -> Iterator[PricingControl]:
    """The pricing service's control API (lab 4's tests use it)."""
    with httpx.Client(base_url=pricing_server.base_url, timeout=10) as http:
        yield PricingControl(http)


def shop_env(
    database_url: str, redis_url: str, redis_prefix: str, amqp_url: str, names: Names
) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": redis_prefix,
        "AMQP_URL": amqp_url,
        "QUEUE_PREFIX": names.prefix,
        "AMQP_PUBLISH_TIMEOUT": str(PUBLISH_TIMEOUT),
        "NOTIFY_PREFETCH": str(PREFETCH),
        "NOTIFY_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "NOTIFY_RETRY_DELAY_MS": str(RETRY_DELAY_MS),
        "NOTIFY_QUEUE_MAX_LENGTH": str(QUEUE_MAX_LENGTH),
        "NOTIFY_RECONNECT_MAX_DELAY": "1",
        "LOG_LEVEL": "info",
    }


@pytest.fixture(scope="session")
def app_env(
    impl_dir: Path,
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    amqp_url: str,
    main_names: Names,
    pricing_server: AppServer,
) -> dict[str, str]:
    env = {
        **shop_env(database_url, redis_url, redis_prefix, amqp_url, main_names),
        "LOG_LEVEL": "warning",
        "PRICING_URL": pricing_server.base_url,
        "PRICING_TIMEOUT": str(PRICING_TIMEOUT),
        "PRICING_ATTEMPTS": str(PRICING_ATTEMPTS),
        "PRICING_BACKOFF": str(PRICING_BACKOFF),
    }
    migrate_impl(impl_dir, env)
    seed_items(database_url)
    return env


@pytest.fixture(scope="session")
def notifications_service(
    impl_dir: Path, app_env: dict[str, str], rabbit: Rabbit, main_names: Names
) -> Iterator[Notifications]:
    service = Notifications(impl_dir, {**app_env, "LOG_LEVEL": "info"}, rabbit, main_names)
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def notifications(notifications_service: Notifications) -> Notifications:
    """The main notifications service, running (restarted if an earlier test stopped it)."""
    return notifications_service.ensure_running()


@pytest.fixture(scope="session")
def spy(request: pytest.FixtureRequest, rabbit: Rabbit, main_names: Names) -> str:
    """A queue bound like the work queue: it keeps a copy of every order.created event."""
    if request.config.getoption("base_url"):
        not_gradable("reads the events on the broker of the server the grader starts")
    queue = f"{main_names.prefix}spy"
    rabbit.declare_exchange(main_names.exchange)
    rabbit.declare_queue(queue)
    rabbit.bind(queue, main_names.exchange, "order.created")
    return queue


@pytest.fixture
def shop(request: pytest.FixtureRequest, client: httpx.Client) -> httpx.Client:
    """A client of the shop API whose events have somewhere to go: with a server the grader
    starts, the notifications service runs (it declares and binds the work queue); a
    deployment (`--base-url`) runs its own."""
    if not request.config.getoption("base_url"):
        request.getfixturevalue("notifications")
    return client


# --------------------------------------------------------------------------- refusals


@pytest.fixture(scope="session")
def refuse_names(rabbit: Rabbit, run_id: str) -> Names:
    return names_for(rabbit, run_id, "refuse")


@pytest.fixture(scope="session")
def refuse_server(
    impl_dir: Path, app_env: dict[str, str], refuse_names: Names
) -> Iterator[AppServer]:
    """A second shop API on its own exchange, with no notifications service behind it."""
    env = {**app_env, "QUEUE_PREFIX": refuse_names.prefix}
    with AppServer(impl_dir, env, start_timeout=START_TIMEOUT) as server:
        yield server


@pytest.fixture
def refuse_client(refuse_server: AppServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=refuse_server.base_url, timeout=PUBLISH_TIMEOUT + 10) as http:
        yield http


# --------------------------------------------------------------------------- an outage


@pytest.fixture
def broker_proxy(amqp_url: str) -> Iterator[TcpProxy]:
    """The way to RabbitMQ of the `outage` set-up: the test cuts it, or stalls it."""
    target = urlsplit(amqp_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.cut()


@pytest.fixture
def outage(
    impl_dir: Path,
    app_env: dict[str, str],
    amqp_url: str,
    rabbit: Rabbit,
    run_id: str,
    broker_proxy: TcpProxy,
) -> Iterator[tuple[httpx.Client, Notifications, TcpProxy]]:
    """A shop API and a notifications service that reach RabbitMQ through `broker_proxy`."""
    names = names_for(rabbit, run_id, "outage")
    env = {**app_env, "QUEUE_PREFIX": names.prefix, "AMQP_URL": broker_proxy.url_for(amqp_url)}
    service = Notifications(impl_dir, {**env, "LOG_LEVEL": "info"}, rabbit, names)
    try:
        service.start()  # first: it declares and binds the work queue
        with (
            AppServer(impl_dir, env, start_timeout=START_TIMEOUT) as server,
            httpx.Client(base_url=server.base_url, timeout=PUBLISH_TIMEOUT + 10) as http,
        ):
            yield http, service, broker_proxy
    finally:
        service.close()


# --------------------------------------------------------------------------- a race


@pytest.fixture
def race(
    impl_dir: Path, app_env: dict[str, str], rabbit: Rabbit, run_id: str
) -> Iterator[tuple[Names, list[Notifications]]]:
    """Two notifications services consuming one work queue of their own. A failed message
    waits a minute in their retry queue, so whatever went there is still there when the test
    looks."""
    names = names_for(rabbit, run_id, "race")
    env = {**app_env, "QUEUE_PREFIX": names.prefix, "NOTIFY_RETRY_DELAY_MS": "60000"}
    services = [Notifications(impl_dir, {**env, "LOG_LEVEL": "info"}, rabbit, names) for _ in "ab"]
    try:
        services[0].start()
        services[1].start(consumers=2)
        yield names, services
    finally:
        for service in services:
            service.close()
