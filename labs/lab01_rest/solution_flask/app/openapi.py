"""A hand-written OpenAPI 3.1 document for the items API, and a small /docs page.

FastAPI derives this document from the routes' signatures; Flask knows nothing about request
or response shapes, so we describe the paths here and take the schemas from pydantic models.
"""

from typing import Any

from flask import Blueprint, current_app

from app.schemas import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    ErrorResponse,
    Health,
    Item,
    ItemCreate,
    ItemPatch,
)

bp = Blueprint("openapi", __name__)

MODELS = (Item, ItemCreate, ItemPatch, ErrorResponse, Health)
REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(model=name)}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, **(_json_content(schema) if schema else {})}


ITEM_ID = {"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer"}}
NOT_FOUND = _response("No such item", _ref("ErrorResponse"))
INVALID = _response("Validation error", _ref("ErrorResponse"))


def _paths() -> dict[str, Any]:
    item = _response("The item", _ref("Item"))
    return {
        "/healthz": {
            "get": {"summary": "Liveness", "responses": {"200": _response("OK", _ref("Health"))}}
        },
        "/items": {
            "get": {
                "summary": "List items (one page, in id order)",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_PAGE_SIZE,
                            "default": DEFAULT_PAGE_SIZE,
                        },
                    },
                    {
                        "name": "offset",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "default": 0},
                    },
                ],
                "responses": {
                    "200": {
                        **_response("One page", {"type": "array", "items": _ref("Item")}),
                        "headers": {
                            "X-Total-Count": {
                                "description": "Number of all items",
                                "schema": {"type": "integer"},
                            }
                        },
                    },
                    "422": INVALID,
                },
            },
            "post": {
                "summary": "Create an item",
                "requestBody": {"required": True, **_json_content(_ref("ItemCreate"))},
                "responses": {
                    "201": {
                        **_response("Created", _ref("Item")),
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    "422": INVALID,
                },
            },
        },
        "/items/{item_id}": {
            "parameters": [ITEM_ID],
            "get": {
                "summary": "Get an item",
                "responses": {"200": item, "404": NOT_FOUND, "422": INVALID},
            },
            "put": {
                "summary": "Replace an item",
                "requestBody": {"required": True, **_json_content(_ref("ItemCreate"))},
                "responses": {"200": item, "404": NOT_FOUND, "422": INVALID},
            },
            "patch": {
                "summary": "Update some fields of an item",
                "requestBody": {"required": True, **_json_content(_ref("ItemPatch"))},
                "responses": {"200": item, "404": NOT_FOUND, "422": INVALID},
            },
            "delete": {
                "summary": "Delete an item",
                "responses": {"204": _response("Deleted"), "404": NOT_FOUND, "422": INVALID},
            },
        },
    }


def openapi_document(title: str) -> dict[str, Any]:
    """Return the OpenAPI document of the app."""
    schemas = {m.__name__: m.model_json_schema(ref_template=REF) for m in MODELS}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1.0.0"},
        "paths": _paths(),
        "components": {"schemas": schemas},
    }


@bp.get("/openapi.json")
def openapi_json() -> dict[str, Any]:
    return openapi_document(str(current_app.config["APP_NAME"]))


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title} - docs</title></head>
<body>
<h1>{title}</h1>
<p>The API is described by its OpenAPI document: <a href="/openapi.json">/openapi.json</a>.
Paste that URL into any OpenAPI viewer (Swagger UI, Redoc, Postman) to browse and try it.</p>
<ul>{rows}</ul>
</body>
</html>
"""


@bp.get("/docs")
def docs() -> str:
    title = str(current_app.config["APP_NAME"])
    rows = "".join(
        f"<li><code>{method.upper()} {path}</code> {op.get('summary', '')}</li>"
        for path, ops in _paths().items()
        for method, op in ops.items()
        if method != "parameters"
    )
    return DOCS_PAGE.format(title=title, rows=rows)
