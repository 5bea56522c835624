"""Lab 1, task 6: the API describes itself in an OpenAPI document at /openapi.json.

FastAPI writes the document from the routes and the pydantic models; the Flask solution
serves a hand-written one. The tests check what a client of the API relies on: the
pagination parameters, the status codes, and the validation rules of the request body.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

TASK_DOCS = "6. Document the API"


def openapi(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200, (
        f"GET /openapi.json must answer the OpenAPI document: {r.status_code}"
    )
    doc: dict[str, Any] = r.json()
    assert isinstance(doc.get("paths"), dict), "the OpenAPI document must have `paths`"
    return doc


def operation(doc: dict[str, Any], method: str, path_pattern: str) -> dict[str, Any]:
    for path, ops in doc["paths"].items():
        if re.fullmatch(path_pattern, path) and method in ops:
            op: dict[str, Any] = ops[method]
            # Parameters may be listed on the path instead of the operation.
            op.setdefault("parameters", [])
            op["parameters"] = [*ops.get("parameters", []), *op["parameters"]]
            return op
    pytest.fail(f"/openapi.json does not document {method.upper()} {path_pattern}", pytrace=False)


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` ("#/components/schemas/Item") to the schema it names."""
    while "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


ITEM_PATH = r"/items/\{[^}/]+\}"


@pytest.mark.points(2, task=TASK_DOCS)
def test_openapi_documents_pagination_parameters(client: httpx.Client) -> None:
    op = operation(openapi(client), "get", "/items")
    params = {p.get("name"): p for p in op["parameters"] if p.get("in") == "query"}
    for name in ("limit", "offset"):
        assert name in params, f"GET /items must document the query parameter `{name}`"
    limit, offset = params["limit"].get("schema", {}), params["offset"].get("schema", {})
    assert limit.get("minimum") == 1 and limit.get("maximum") == 100, (
        f"`limit` must be documented with minimum 1 and maximum 100, got {limit}"
    )
    assert offset.get("minimum") == 0, f"`offset` must be documented with minimum 0, got {offset}"


@pytest.mark.points(2, task=TASK_DOCS)
def test_openapi_documents_status_codes(client: httpx.Client) -> None:
    doc = openapi(client)
    expected = [
        ("post", "/items", "POST /items", "201"),
        ("delete", ITEM_PATH, "DELETE /items/{id}", "204"),
        ("get", ITEM_PATH, "GET /items/{id}", "404"),
    ]
    for method, path, shown, status in expected:
        responses = operation(doc, method, path).get("responses", {})
        assert status in responses, (
            f"{shown} must document the response {status}, found {sorted(responses)}"
        )


@pytest.mark.points(2, task=TASK_DOCS)
def test_openapi_schema_carries_validation_rules(client: httpx.Client) -> None:
    doc = openapi(client)
    body = operation(doc, "post", "/items").get("requestBody", {})
    schema = body.get("content", {}).get("application/json", {}).get("schema")
    assert schema, "POST /items must document its JSON request body"
    schema = resolve(doc, schema)
    props = schema.get("properties", {})
    name, price = props.get("name", {}), props.get("price", {})
    assert name.get("minLength") == 1 and name.get("maxLength") == 100, (
        f"the request body's `name` must carry minLength 1 and maxLength 100, got {name}"
    )
    assert price.get("minimum") == 0, (
        f"the request body's `price` must carry minimum 0, got {price}"
    )
    assert schema.get("additionalProperties") is False, (
        "the request body must forbid unknown fields (additionalProperties: false); "
        "pydantic writes it for model_config = ConfigDict(extra='forbid')"
    )


@pytest.mark.points(2, task=TASK_DOCS)
def test_docs_page_shows_every_route(client: httpx.Client) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and "html" in r.headers.get("content-type", ""), (
        f"GET /docs must answer the interactive documentation, an HTML page: {r.status_code} "
        f"{r.headers.get('content-type')!r} (do not turn FastAPI's docs_url off)"
    )
    assert "openapi.json" in r.text, "the /docs page must load the API's /openapi.json"
    doc = openapi(client)
    routes = [
        ("get", "/items", "GET /items", "200"),
        ("post", "/items", "POST /items", "201"),
        ("get", ITEM_PATH, "GET /items/{id}", "200"),
        ("put", ITEM_PATH, "PUT /items/{id}", "200"),
        ("patch", ITEM_PATH, "PATCH /items/{id}", "200"),
        ("delete", ITEM_PATH, "DELETE /items/{id}", "204"),
        ("get", "/healthz", "GET /healthz", "200"),
    ]
    for method, path, shown, status in routes:
        responses = operation(doc, method, path).get("responses", {})
        assert status in responses, (
            f"the documentation must show {shown} with its success answer {status}, found "
            f"{sorted(responses)}"
        )


def test_docs_page_is_served(client: httpx.Client) -> None:
    r = client.get("/docs")
    assert r.status_code == 200, f"GET /docs must answer a page for people: {r.status_code}"
    assert "html" in r.headers.get("content-type", ""), "GET /docs must answer an HTML page"
