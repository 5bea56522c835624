"""Errors of the items service and the one JSON shape they all take: `{"detail": ...}`.

    AppError                    status 400, the base of every error the app raises on purpose
    ├── NotFoundError           status 404
    │   └── ItemNotFoundError
    └── RequestValidationError  status 422, `detail` is a list of pydantic errors

FastAPI answers 404/405/422 in this shape by itself; in Flask the handlers below do it, so that
both solutions pass the same tests.
"""

from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException


class AppError(Exception):
    """An error with an HTTP status and a message for the client."""

    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail: str | list[dict[str, Any]] = detail


class NotFoundError(AppError):
    status_code = 404


class ItemNotFoundError(NotFoundError):
    def __init__(self, item_id: int) -> None:
        super().__init__(f"Item {item_id} not found")
        self.item_id = item_id


class RequestValidationError(AppError):
    """The request does not match the schema; `errors` are pydantic's, with `loc` prefixed."""

    status_code = 422

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("Request validation failed")
        self.detail = errors


def _app_error(exc: AppError) -> tuple[Response, int]:
    return jsonify(detail=exc.detail), exc.status_code


def _http_error(exc: HTTPException) -> Response:
    # Werkzeug's own errors (unknown URL, wrong method, ...) would otherwise be HTML pages.
    response = jsonify(detail=exc.name)
    response.status_code = exc.code or 500
    for key, value in exc.get_headers():  # keeps `Allow` of a 405
        if key.lower() != "content-type":
            response.headers[key] = value
    return response


def install_error_handlers(app: Flask) -> None:
    """Answer every AppError and every HTTP error with `{"detail": ...}`."""
    app.register_error_handler(AppError, _app_error)
    app.register_error_handler(HTTPException, _http_error)
