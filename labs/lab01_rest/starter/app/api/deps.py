"""Dependencies the routes declare by type: `repo: RepoDep` gives the app's item store.

Tests (and later labs) swap them through `app.dependency_overrides[get_repo]`.
"""

from typing import Annotated

from fastapi import Depends, Request

from app.repository import ItemStore


def get_repo(request: Request) -> ItemStore:
    """Return the store created with the app (see `create_app`)."""
    store: ItemStore = request.app.state.repo
    return store


RepoDep = Annotated[ItemStore, Depends(get_repo)]
