"""CRUD routes of /items: validate by hand (see deps.py), call the repository, shape the answer.

Flask returns whatever the view returns: a dict or list becomes JSON, a tuple sets the status
and headers. The server runs views in threads (`threaded=True`), hence the repository's lock.
"""

from flask import Blueprint, Response, jsonify

from app import repository
from app.api.deps import body, get_repo, path_int, query
from app.schemas import Item, ItemCreate, ItemPatch, PageParams

bp = Blueprint("items", __name__, url_prefix="/items")


def _json(item: Item) -> dict[str, object]:
    return item.model_dump(mode="json")


@bp.get("")
def list_items() -> tuple[Response, int, dict[str, str]]:
    """Return one page of items in id order; `X-Total-Count` holds the number of all items."""
    page = query(PageParams)
    items, total = repository.list_items(repo=get_repo(), limit=page.limit, offset=page.offset)
    return jsonify([_json(item) for item in items]), 200, {"X-Total-Count": str(total)}


@bp.post("")
def create_item() -> tuple[dict[str, object], int, dict[str, str]]:
    """Create an item; `Location` points to it."""
    item = repository.create_item(repo=get_repo(), data=body(ItemCreate))
    return _json(item), 201, {"Location": f"/items/{item.id}"}


@bp.get("/<item_id>")
def get_item(item_id: str) -> dict[str, object]:
    return _json(repository.get_item(repo=get_repo(), item_id=path_int("item_id", item_id)))


@bp.put("/<item_id>")
def replace_item(item_id: str) -> dict[str, object]:
    """Replace the whole item: optional fields left out become null."""
    item_id_ = path_int("item_id", item_id)
    item = repository.replace_item(repo=get_repo(), item_id=item_id_, data=body(ItemCreate))
    return _json(item)


@bp.patch("/<item_id>")
def update_item(item_id: str) -> dict[str, object]:
    """Change only the fields in the body."""
    item_id_ = path_int("item_id", item_id)
    item = repository.update_item(repo=get_repo(), item_id=item_id_, data=body(ItemPatch))
    return _json(item)


@bp.delete("/<item_id>")
def delete_item(item_id: str) -> tuple[str, int]:
    repository.delete_item(repo=get_repo(), item_id=path_int("item_id", item_id))
    return "", 204
