"""The benchmark's baseline: lab 3's sync service with the quote endpoint written the sync way.

Lab 3 has no quote endpoint, so comparing it with lab 4's would compare different work. This
file mounts lab 3's app as it is and adds GET /items/{item_id}/quote the way a sync service
would write it: a `def` route (FastAPI runs it in its thread pool of 40 threads), a blocking
`httpx.Client`, and the two calls to the pricing service one after the other. Same answer,
same timeout, same retries and backoff as lab 4's async route; only the I/O model differs.

Run by `labs/lab04_async/bench.py` as `python sync_quote.py` with the working directory and
PYTHONPATH in lab 3's implementation folder, so that `app` is lab 3's package.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import uvicorn
from fastapi import APIRouter, HTTPException
from pydantic_settings import BaseSettings

from app import service  # lab 3's package (see the module docstring)
from app.api.deps import CacheDep, SessionDep, SettingsDep
from app.main import create_app
from app.schemas import Item


class BenchSettings(BaseSettings):
    """The same PRICING_* variables as lab 4's app reads."""

    host: str = "127.0.0.1"
    port: int = 8000
    pricing_url: str = "http://127.0.0.1:8001"
    pricing_timeout: float = 1.0
    pricing_attempts: int = 3
    pricing_backoff: float = 0.1


settings = BenchSettings()
# One client shared by all threads (httpx.Client is thread-safe): a pool of kept-alive
# connections, as lab 4 has.
http = httpx.Client(
    base_url=settings.pricing_url,
    timeout=settings.pricing_timeout,
    limits=httpx.Limits(max_connections=500, max_keepalive_connections=500),
)


def get_json(path: str, params: dict[str, Any]) -> Any:
    """GET with the same policy as lab 4: bounded attempts, a timeout each, doubling pauses."""
    problem = ""
    for attempt in range(1, settings.pricing_attempts + 1):
        try:
            response = http.get(path, params=params)
        except httpx.TransportError as exc:
            problem = type(exc).__name__
        else:
            if response.is_success:
                return response.json()
            problem = f"answered {response.status_code}"
            if response.status_code < 500:
                break
        if attempt < settings.pricing_attempts:
            time.sleep(settings.pricing_backoff * 2 ** (attempt - 1))
    raise HTTPException(503, f"Pricing service unavailable: {path}: {problem}")


router = APIRouter()


@router.get("/items/{item_id}/quote")
def quote_item(
    session: SessionDep, cache: CacheDep, app_settings: SettingsDep, item_id: int
) -> dict[str, Any]:
    body, _ = service.read_item(
        session=session, cache=cache, settings=app_settings, item_id=item_id
    )
    session.close()  # as lab 4 does: no database connection held during the network calls
    item = Item.model_validate_json(body)
    # One after the other: a thread can wait for one answer at a time.
    price = get_json(f"/price/{item.id}", {"base_price": item.price})
    stock = get_json(f"/stock/{item.id}", {})
    return {
        "item": item.model_dump(),
        "price": price["price"],
        "discount": price["discount"],
        "available": stock["available"],
    }


app = create_app()
app.include_router(router)

if __name__ == "__main__":
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
