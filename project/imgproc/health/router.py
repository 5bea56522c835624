"""`/healthz`: the process answers. `/readyz`: PostgreSQL and the broker answer (and the cache?)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from imgproc.deps import CacheDep, QueueDep, SessionDep
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


@router.get("/readyz", responses={503: {"description": "PostgreSQL or the broker does not answer"}})
async def readyz(session: SessionDep, cache: CacheDep, queue: QueueDep) -> JSONResponse:
    """Ready when PostgreSQL and the broker answer; the Redis cache is reported, not required.

    Without the cache the API still works from PostgreSQL, so a load balancer must keep
    sending it traffic: a cache outage is `degraded`, not `not ready`.
    """

    async def postgres() -> None:
        await session.execute(text("SELECT 1"))

    async def broker() -> None:
        await anyio.to_thread.run_sync(queue.check, _TIMEOUT)

    names = ("postgres", "redis", "broker")
    results = await asyncio.gather(_run(postgres), _run(cache.ping), _run(broker))
    checks = dict(zip(names, results, strict=True))
    failing = [name for name in ("postgres", "broker") if checks[name] != "ok"]
    if failing:
        return JSONResponse(
            error_body(
                "not_ready", f"not ready: {', '.join(failing)} did not answer", details=checks
            ),
            status_code=503,
        )
    status = "ready" if checks["redis"] == "ok" else "degraded"
    return JSONResponse({"status": status, "checks": checks})
