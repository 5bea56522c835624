"""Cache-aside for the items API: which keys a read fills and which keys a write deletes.

    item:<id>                 one item, as the JSON the API answers       cache_item_ttl
    items:<generation>:<q>    one page of GET /items for the query q      cache_list_ttl
    items:generation          changes on every write (see below)          one day
    stats                     GET /items/stats                            cache_stats_ttl
    lock:stats                the stampede lock of the stats              cache_lock_ms
    stats:computations        how often the stats were really computed    one day

(All of them with REDIS_PREFIX in front.) A write deletes `item:<id>` and `stats`, and starts
a new list generation: list pages cannot be found one by one (a new item may belong on any
page of any filter), so their keys contain the generation and a write makes them all
unreachable at once; they expire on their own.
"""

import hashlib
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app import repository
from app.cache import Cache
from app.config import Settings
from app.schemas import ItemQuery

GENERATION = "items:generation"
GENERATION_TTL = 86_400
STATS = "stats"
STATS_COMPUTATIONS = "stats:computations"


def item_key(item_id: int) -> str:
    return f"item:{item_id}"


async def read_item(
    *, session: AsyncSession, cache: Cache, settings: Settings, item_id: int
) -> tuple[bytes, bool]:
    """Return the item's JSON and whether it came from the cache (cache-aside)."""
    cached = await cache.get(item_key(item_id))
    if cached is not None:
        return cached, True
    item = await repository.get_item(session=session, item_id=item_id)
    body = item.model_dump_json().encode()
    await cache.set(item_key(item_id), body, settings.cache_item_ttl)
    return body, False


async def read_page(
    *, session: AsyncSession, cache: Cache, settings: Settings, query: ItemQuery
) -> tuple[bytes, int, bool]:
    """Return one page as JSON, the total, and whether it came from the cache."""
    # Read the generation before the database: a write that commits after our SELECT also
    # changes the generation after it, so a stale page lands under a key nobody reads.
    generation = (await cache.get(GENERATION) or b"0").decode()
    digest = hashlib.sha1(query.model_dump_json().encode()).hexdigest()[:16]
    name = f"items:{generation}:{digest}"
    cached = await cache.get(name)
    if cached is not None:
        count, _, page = cached.partition(b"\n")
        return page, int(count), True
    items, total = await repository.list_items(session=session, query=query)
    body = b"[" + b",".join(item.model_dump_json().encode() for item in items) + b"]"
    # One value, "<total>\n<items JSON>": the page and its X-Total-Count always agree.
    await cache.set(name, b"%d\n%s" % (total, body), settings.cache_list_ttl)
    return body, total, False


async def read_stats(
    *, session: AsyncSession, cache: Cache, settings: Settings
) -> tuple[bytes, bool]:
    """Return the stats JSON and whether it came from the cache; compute once per miss."""

    async def compute() -> bytes:
        await cache.count(STATS_COMPUTATIONS)  # counted where the query really runs
        stats = await repository.item_stats(session=session)
        return stats.model_dump_json().encode()

    return await cache.get_or_compute(STATS, compute, settings.cache_stats_ttl)


async def after_write(*, cache: Cache, item_id: int | None = None) -> None:
    """Delete what a committed write to `item_id` (or a new item) made stale."""
    await cache.invalidate(*([item_key(item_id)] if item_id is not None else []), STATS)
    await cache.set(GENERATION, uuid.uuid4().hex.encode(), GENERATION_TTL)
