"""`/healthz`: the process answers. `/readyz`: PostgreSQL, Redis and the broker answer too."""

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


@router.get("/readyz", responses={503: {"description": "a dependency does not answer"}})
async def readyz(state: StateDep) -> JSONResponse:
    names = ("postgres", "redis", "broker")
    results = await asyncio.gather(*(_run(c, state) for c in (_postgres, _redis, _broker)))
    checks = dict(zip(names, results, strict=True))
    if all(r == "ok" for r in results):
        return JSONResponse({"status": "ready", "checks": checks})
    failing = ", ".join(n for n, r in checks.items() if r != "ok")
    return JSONResponse(
        error_body("not_ready", f"not ready: {failing} did not answer", details=checks),
        status_code=503,
    )
