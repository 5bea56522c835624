"""`/healthz`: the process answers. `/readyz`: PostgreSQL and the broker answer (and the cache?)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from imgproc.deps import AppState, StateDep
from imgproc.errors import error_body

router = APIRouter(tags=["health"])
_TIMEOUT = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _postgres(state: AppState) -> None:
    async with state.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _redis(state: AppState) -> None:
    await state.cache.client.ping()


async def _broker(state: AppState) -> None:
    def check() -> None:
        with state.publisher.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=int(_TIMEOUT))

    await anyio.to_thread.run_sync(check)


async def _run(check: Callable[[AppState], Awaitable[None]], state: AppState) -> str:
    try:
        await asyncio.wait_for(check(state), _TIMEOUT)
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:300]
    return "ok"


@router.get("/readyz", responses={503: {"description": "PostgreSQL or the broker does not answer"}})
async def readyz(state: StateDep) -> JSONResponse:
    """Ready when PostgreSQL and the broker answer; the Redis cache is reported, not required.

    Without the cache the API still works from PostgreSQL, so a load balancer must keep
    sending it traffic: a cache outage is `degraded`, not `not ready`.
    """
    names = ("postgres", "redis", "broker")
    results = await asyncio.gather(*(_run(c, state) for c in (_postgres, _redis, _broker)))
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
