"""The worker's cache client (SyncCache) against a real Redis.

It sends status writes without waiting for the reply and reads the replies later, so these tests
check what that must not break: the writes land, in order; a connection Redis closed is replaced
before a write goes into it; a cache that is down costs a job nothing and never raises.
"""

from __future__ import annotations

import time

import redis

from imgproc.cache.service import SyncCache
from imgproc.config import Settings
from imgproc.jobs.status_cache import StatusKeys


def _cache(settings: Settings) -> SyncCache:
    return SyncCache(settings.redis_url, timeout=1)


def _keys(settings: Settings) -> StatusKeys:
    return StatusKeys(settings.redis_prefix + "cache-test:")


def test_sent_writes_land_in_order_without_waiting(settings: Settings) -> None:
    cache = _cache(settings)
    reader = redis.Redis.from_url(settings.redis_url)
    key = _keys(settings).status("order")
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
        # An error reply fails that command only: the connection stays in step.
        cache.send(("HSET", key + ":wrong", "f", "v"), ("INCR", key + ":wrong"))
        cache.send(("SET", key, "still fine", "EX", 60))
        cache.settle()
        assert reader.get(key) == b"still fine"
    finally:
        reader.delete(key, key + ":wrong")
        reader.close()
        cache.close()


def test_a_connection_closed_by_redis_is_replaced_before_the_next_write(
    settings: Settings,
) -> None:
    cache = _cache(settings)
    reader = redis.Redis.from_url(settings.redis_url)
    key = _keys(settings).status("closed")
    try:
        name = f"imgproc-cache-test-{settings.celery_queue.replace('.', '-')}"
        cache.send(("CLIENT", "SETNAME", name))
        cache.settle()
        (ours,) = [c["id"] for c in reader.client_list() if c["name"] == name]
        # What a Redis restart or its idle timeout does to the worker's connection.
        assert reader.client_kill_filter(_id=ours) == 1
        time.sleep(0.05)
        cache.send(("SET", key, "landed", "EX", 60))
        cache.settle()
        assert reader.get(key) == b"landed", "the write went out on a new connection"
    finally:
        reader.delete(key)
        reader.close()
        cache.close()


def test_a_cache_that_is_down_never_raises_and_is_skipped_for_a_while(
    settings: Settings,
) -> None:
    cache = SyncCache("redis://127.0.0.1:1/0", timeout=0.25, pause=30)
    key = _keys(settings).status("nowhere")
    cache.send(("SET", key, "v", "EX", 60))
    cache.settle()
    assert cache._unread == 0 and cache._conn is None
    started = time.perf_counter()
    for _ in range(100):
        cache.send(("SET", key, "v", "EX", 60))
    assert time.perf_counter() - started < 0.05, "after a failure the cache is skipped"
    cache.close()
