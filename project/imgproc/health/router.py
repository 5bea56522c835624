"""`/healthz`: the process answers. `/readyz`: PostgreSQL and the broker answer (and the cache?)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from imgproc.deps import CacheDep, QueueDep, SessionDep, SettingsDep, StoreDep
from imgproc.errors import error_body

router = APIRouter(tags=["health"])
_TIMEOUT = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _run(check: Callable[[], Awaitable[None]]) -> str:
    try:
        await asyncio.wait_for(check(), _TIMEOUT)
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:300]
    return "ok"


@router.get(
    "/readyz",
    responses={
        200: {"description": "`ready`, or `degraded` when the cache or the data directory fails"},
        503: {"description": "PostgreSQL or the broker does not answer"},
    },
)
async def readyz(
    session: SessionDep,
    cache: CacheDep,
    queue: QueueDep,
    store: StoreDep,
    settings: SettingsDep,
) -> JSONResponse:
    """Ready when PostgreSQL and the broker answer; the cache and the data directory are reported.

    Without the cache the API still works from PostgreSQL; with a full or read-only data
    directory it refuses new uploads (503) but still answers every status and result. Either
    way a load balancer must keep sending it traffic (all replicas share that disk): such an
    outage is `degraded`, not `not ready`.
    """

    async def postgres() -> None:
        await session.execute(text("SELECT 1"))

    async def broker() -> None:
        await anyio.to_thread.run_sync(queue.check, _TIMEOUT)

    async def storage() -> None:
        await anyio.to_thread.run_sync(store.check_writable, settings.max_upload_bytes)

    names = ("postgres", "redis", "broker", "storage")
    results = await asyncio.gather(_run(postgres), _run(cache.ping), _run(broker), _run(storage))
    checks = dict(zip(names, results, strict=True))
    failing = [name for name in ("postgres", "broker") if checks[name] != "ok"]
    if failing:
        return JSONResponse(
            error_body(
                "not_ready", f"not ready: {', '.join(failing)} did not answer", details=checks
            ),
            status_code=503,
        )
    status = "ready" if checks["redis"] == checks["storage"] == "ok" else "degraded"
    return JSONResponse({"status": status, "checks": checks})
