"""Errors of the shop service and the one JSON shape they all take: `{"detail": ...}`.

    AppError                 status 400, the base of every error the app raises on purpose
    ├── NotFoundError        status 404
    │   └── ItemNotFoundError
    ├── ConflictError        status 409
    │   └── DuplicateNameError
    ├── UnprocessableError   status 422
    │   └── UnknownItemError     an order for an item that does not exist
    └── ServiceUnavailableError    status 503
        ├── PricingUnavailableError    the pricing service failed every attempt
        └── BrokerUnavailableError     RabbitMQ is down, or refused or did not confirm an event

Validation errors (422) come from FastAPI itself, with `detail` a list of pydantic errors.
A value the database refuses although the schema let it through (SQLSTATE class 22, e.g.
a NUL character in a text) is the client's fault too: 422, never a 500.
A stub that raises NotImplementedError answers 501 with its message (see below).
"""

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError


class AppError(Exception):
    """An error with an HTTP status and a message for the client."""

    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFoundError(AppError):
    status_code = 404


class ItemNotFoundError(NotFoundError):
    def __init__(self, item_id: int) -> None:
        super().__init__(f"Item {item_id} not found")
        self.item_id = item_id


class ConflictError(AppError):
    status_code = 409


class DuplicateNameError(ConflictError):
    def __init__(self, name: str) -> None:
        super().__init__(f"An item named {name!r} already exists")
        self.name = name


class UnprocessableError(AppError):
    status_code = 422


class UnknownItemError(UnprocessableError):
    def __init__(self, item_id: int) -> None:
        super().__init__(f"item_id: there is no item {item_id}")
        self.item_id = item_id


class ServiceUnavailableError(AppError):
    status_code = 503


class PricingUnavailableError(ServiceUnavailableError):
    """The pricing service gave no usable answer (after all attempts, or a final 4xx)."""


class BrokerUnavailableError(ServiceUnavailableError):
    """The broker did not confirm an event: it is down, refused it, or did not answer in time."""


async def app_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail})


def _is_data_error(exc: DBAPIError) -> bool:
    """SQLSTATE class 22, "data exception": PostgreSQL refused a value (e.g. a NUL character).

    psycopg reports it as DataError; asyncpg, through SQLAlchemy, as a plain DBAPIError.
    """
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(exc, DataError) or (isinstance(code, str) and code.startswith("22"))


async def data_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if not _is_data_error(exc):
        raise exc  # any other database error is the server's: 500
    message = str(exc.orig).splitlines()[0] if exc.orig else "invalid value"
    return JSONResponse(status_code=422, content={"detail": f"Invalid value: {message}"})


async def not_implemented_handler(request: Request, exc: Exception) -> JSONResponse:
    # The starter's stubs raise NotImplementedError("TODO(lab N): ..."): answer 501 with that
    # message, so a client (and the grader) sees what is left to do instead of a bare 500.
    return JSONResponse(status_code=501, content={"detail": str(exc)})


def _json_safe(value: Any) -> Any:
    """Replace NaN and Infinity, which JSON cannot carry, by their text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own handler echoes each bad `input`; a NaN price cannot be encoded as JSON and
    # would turn this 422 into a 500. Same answer otherwise.
    assert isinstance(exc, RequestValidationError)
    detail = _json_safe(jsonable_encoder(exc.errors()))
    return JSONResponse(status_code=422, content={"detail": detail})


def install_error_handlers(app: FastAPI) -> None:
    """Answer every AppError with `{"detail": message}` and its status code."""
    app.add_exception_handler(AppError, app_error_handler)
    app.add_exception_handler(DBAPIError, data_error_handler)
    app.add_exception_handler(NotImplementedError, not_implemented_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
