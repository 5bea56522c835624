"""The worker's cache client (SyncCache) against a real Redis.

It sends status writes without waiting for the reply and reads the replies later, so these tests
check what that must not break: the writes land, in order, and a dropped connection costs a
write, never the job.
"""

from __future__ import annotations

import redis

from imgproc.cache.service import SyncCache
from imgproc.config import Settings


def _cache(settings: Settings) -> SyncCache:
    return SyncCache(settings.redis_url, settings.redis_prefix + "cache-test:", timeout=1)


def test_sent_writes_land_in_order_without_waiting(settings: Settings) -> None:
    cache = _cache(settings)
    reader = redis.Redis.from_url(settings.redis_url)
    key = cache.keys.status("order")
    try:
        for i in range(50):
            cache.send(("SET", key, f"v{i}", "EX", 60))
        assert cache._unread == 1, "each send reads the replies of the one before"
        cache.settle()
        assert cache._unread == 0
        assert reader.get(key) == b"v49", "the last write sent is the value Redis holds"
        assert 0 < reader.ttl(key) <= 60
        cache.send(("SET", key, "x", "EX", 60), ("DEL", key))
        cache.settle()
        assert reader.exists(key) == 0, "commands sent together run in order"
    finally:
        reader.delete(key)
        reader.close()
        cache.close()


def test_a_dropped_connection_costs_one_write_and_the_next_one_reconnects(
    settings: Settings,
) -> None:
    cache = _cache(settings)
    reader = redis.Redis.from_url(settings.redis_url)
    key = cache.keys.status("dropped")
    try:
        name = f"imgproc-cache-test-{settings.celery_queue.replace('.', '-')}"
        cache.send(("CLIENT", "SETNAME", name))
        cache.settle()
        (ours,) = [c["id"] for c in reader.client_list() if c["name"] == name]
        assert reader.client_kill_filter(_id=ours) == 1
        # The write after the kill either fails on the dead socket or its reply never comes:
        # both are logged and dropped, nothing raises.
        cache.send(("SET", key, "lost?", "EX", 60))
        cache.settle()
        cache.send(("SET", key, "after", "EX", 60))
        cache.settle()
        assert reader.get(key) == b"after", "a new connection carries the next write"
    finally:
        reader.delete(key)
        reader.close()
        cache.close()


def test_a_cache_that_is_down_never_raises(settings: Settings) -> None:
    cache = SyncCache("redis://127.0.0.1:1/0", settings.redis_prefix, timeout=0.25)
    cache.send(("SET", cache.keys.status("nowhere"), "v", "EX", 60))
    cache.settle()
    assert cache._unread == 0
    cache.close()
