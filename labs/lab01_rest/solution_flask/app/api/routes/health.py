"""Liveness: answers as soon as the process serves HTTP."""

from flask import Blueprint

from app.schemas import Health

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> dict[str, object]:
    return Health().model_dump()
