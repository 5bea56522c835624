"""Build the FastAPI app: `create_app()` for tests and tools, `app` for the server."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app.api.routes import health, items, orders, quote
from app.broker import Publisher
from app.cache import make_cache
from app.config import Settings, get_settings
from app.db import make_engine, make_session_factory
from app.degrade import install_degradation
from app.errors import install_error_handlers
from app.pricing import PricingClient, RetryPolicy, ShardedClient


def create_app(settings: Settings | None = None) -> FastAPI:
    """Return a new app on DATABASE_URL (migrated with Alembic), cached in REDIS_URL, that
    asks PRICING_URL for prices and publishes order events to AMQP_URL."""
    settings = settings or get_settings()
    engine = make_engine(settings)
    cache = make_cache(
        settings.redis_url,
        settings.redis_prefix,
        enabled=settings.cache_enabled,
        lock_ms=settings.cache_lock_ms,
        retry_seconds=settings.cache_retry_seconds,
    )
    policy = RetryPolicy(
        attempts=settings.pricing_attempts,
        timeout=settings.pricing_timeout,
        backoff=settings.pricing_backoff,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One HTTP client for the whole process, made on the event loop that uses it: its
        # pools keep connections to the pricing service open between requests.
        http = ShardedClient(
            settings.pricing_url,
            shards=settings.pricing_pools,
            max_connections=settings.pricing_max_connections,
        )
        app.state.pricing = PricingClient(http, policy)
        # Connections to RabbitMQ open on the first publish, so the API starts (and reads
        # keep working) while the broker is down; orders then answer 503.
        publisher = Publisher(
            settings.amqp_url,
            f"{settings.queue_prefix}events",
            threads=settings.amqp_publishers,
            timeout=settings.amqp_publish_timeout,
            heartbeat=settings.amqp_heartbeat,
        )
        app.state.publisher = publisher
        try:
            yield
        finally:
            # In a thread: close() waits for the publishes in flight to be confirmed.
            await asyncio.to_thread(publisher.close)
            await http.aclose()
            await engine.dispose()  # close the pooled connections on shutdown
            await cache.close()

    # FastAPIOffline: /docs served from files in the wheel, so it works without internet.
    app = FastAPIOffline(title=settings.app_name, version="7.0.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.session_factory = make_session_factory(engine)
    app.state.cache = cache
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(quote.router)
    app.include_router(items.router)
    app.include_router(orders.router)
    install_degradation(
        app,
        latency_ms=settings.latency_ms,
        failure_rate=settings.failure_rate,
        capacity_rps=settings.capacity_rps,
    )
    return app


app = create_app()
