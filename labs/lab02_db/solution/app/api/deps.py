"""Dependencies the routes declare by type: `session: SessionDep` gives a database session.

One session per request, closed (and rolled back unless committed) when the request ends.
Tests and later labs swap it through `app.dependency_overrides[get_session]`.
"""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker


def get_session(request: Request) -> Iterator[Session]:
    """Yield a session of the app's engine; close it after the request."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    with factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
