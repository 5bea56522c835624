"""Settings of the items service (environment first, then `.env`)."""

from functools import lru_cache

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """What this app reads from the environment; the service URLs come from the base class."""

    app_name: str = "Items API (lab 3)"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "warning"
    # Connections kept open per process; requests beyond pool + overflow wait for a free one.
    db_pool_size: int = 10
    db_max_overflow: int = 10
    # Print every SQL statement (handy while learning, far too loud under load).
    db_echo: bool = False
    # Cache: off only to measure what it buys (bench.py); every key expires (seconds).
    cache_enabled: bool = True
    cache_item_ttl: int = 300
    cache_list_ttl: int = 30
    cache_stats_ttl: int = 60
    # How long one computation of the stats may hold the stampede lock (then it expires).
    cache_lock_ms: int = 10_000
    # After Redis fails, skip it for this long instead of paying a timeout on every request.
    cache_retry_seconds: float = 5.0


@lru_cache
def get_settings() -> Settings:
    """Return the settings, read once per process."""
    return Settings()
