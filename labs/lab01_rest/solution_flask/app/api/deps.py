"""What FastAPI's dependencies and signature-based validation do, done by hand for Flask.

- `get_repo()` returns the app's item store (FastAPI: `repo: RepoDep`).
- `body(Model)`, `query(Model)`, `path_int(name, raw)` validate the request with pydantic and
  raise RequestValidationError (422) with the same `loc` ("body", "query", "path") as FastAPI.
"""

import json
from typing import Any, TypeVar

from flask import current_app, request
from pydantic import BaseModel, TypeAdapter, ValidationError

from app.errors import RequestValidationError
from app.repository import ItemStore

M = TypeVar("M", bound=BaseModel)

REPO_KEY = "items_repo"
_INT = TypeAdapter(int)


def get_repo() -> ItemStore:
    """Return the store created with the app (see `create_app`)."""
    store: ItemStore = current_app.extensions[REPO_KEY]
    return store


def body(model: type[M]) -> M:
    """Parse the JSON body into `model`, or raise a 422."""
    if not request.is_json:
        # As FastAPI does: a body that is not declared as JSON is not read as JSON.
        raise RequestValidationError(
            [{"type": "model_attributes_type", "loc": ["body"],
              "msg": "the request body must be JSON (Content-Type: application/json)"}]
        )  # fmt: skip
    try:
        return model.model_validate_json(request.get_data())
    except ValidationError as exc:
        raise RequestValidationError(_errors(exc, "body")) from None


def query(model: type[M]) -> M:
    """Validate the query string with `model`, or raise a 422."""
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise RequestValidationError(_errors(exc, "query")) from None


def path_int(name: str, raw: str) -> int:
    """Return the path parameter as an int, or raise a 422 (Flask's `<int:...>` gives 404)."""
    try:
        return _INT.validate_python(raw)
    except ValidationError as exc:
        raise RequestValidationError(_errors(exc, "path", name)) from None


def _errors(exc: ValidationError, *prefix: str) -> list[dict[str, Any]]:
    # exc.json() turns anything unserialisable in an error's context into text.
    # The bad input is not echoed: it may be bytes that are not UTF-8, or a NaN (invalid JSON).
    errors: list[dict[str, Any]] = json.loads(exc.json(include_url=False, include_input=False))
    for error in errors:
        error["loc"] = [*prefix, *error["loc"]]
    return errors
