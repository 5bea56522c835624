"""Liveness: answers as soon as the process serves HTTP."""

from fastapi import APIRouter

from app.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    return Health()
