"""Dependencies the routes declare by type.

- `session: SessionDep`: a database session for this request, closed afterwards (rolled back
  unless committed);
- `cache: CacheDep`: the app's Redis cache (one client and connection pool per process);
- `settings: SettingsDep`: the app's settings (TTLs).

Tests and later labs swap them through `app.dependency_overrides[...]`.
"""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from app.cache import Cache
from app.config import Settings


def get_session(request: Request) -> Iterator[Session]:
    """Yield a session of the app's engine; close it after the request."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    with factory() as session:
        yield session


def get_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SessionDep = Annotated[Session, Depends(get_session)]
CacheDep = Annotated[Cache, Depends(get_cache)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
