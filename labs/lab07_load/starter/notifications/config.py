"""Settings of the notifications service (environment first, then `.env`)."""

from functools import lru_cache

from pydantic import Field

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """DATABASE_URL, AMQP_URL and QUEUE_PREFIX come from the base class."""

    log_level: str = "info"
    # Unacknowledged messages the broker may hand this consumer at once (basic_qos).
    notify_prefetch: int = Field(default=50, ge=1, le=10_000)
    # Attempts in all for a message whose handling fails, the first one included; then the
    # message goes to the dead-letter queue.
    notify_max_attempts: int = Field(default=5, ge=1, le=50)
    # Wait before the first retry (ms); doubled before each next one.
    notify_retry_delay_ms: int = Field(default=1000, ge=1, le=3_600_000)
    # The work queue holds at most this many messages; then it refuses new ones
    # (x-overflow=reject-publish) and the shop's publish gets a nack: a 503, not a lost order.
    notify_queue_max_length: int = Field(default=100_000, ge=1)
    # Reconnecting to RabbitMQ: the pause starts at 0.2 s and doubles up to this.
    notify_reconnect_max_delay: float = Field(default=5.0, gt=0, le=300)
    # Seconds between AMQP heartbeats (a dead connection is noticed within about two).
    amqp_heartbeat: int = Field(default=30, ge=0, le=600)


@lru_cache
def get_settings() -> Settings:
    """Return the settings, read once per process."""
    return Settings()
