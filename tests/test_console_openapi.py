"""The console's OpenAPI document stays true: the same paths and methods as the router serves,
and the log parameters it lists are exactly the ones the query validator accepts."""

from __future__ import annotations

import uuid

import pytest
from flask.testing import FlaskClient
from functions_framework import create_app

from dbbackup.console.api import ROUTES
from dbbackup.console.logs import CHOICES, FILTERS, PAGING, QueryError, parse_query
from dbbackup.console.openapi import document
from fakes.auth_people import MANAGER, Secured
from fakes.jwks_fake import SupabaseJwksFake
from support.paths import ROOT

pytest_plugins = ["fakes.auth_fixtures"]

SOURCE = ROOT / "functions" / "backup_console" / "main.py"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
EXAMPLES = {"name": "console.js", "log_id": str(uuid.uuid4()), "key": "backup_enabled", "restore_id": str(uuid.uuid4())}


def operations(doc: dict) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in doc["paths"].items() for method in item if method in HTTP_METHODS}


def parameters(doc: dict, path: str) -> dict[str, dict]:
    return {p["name"]: p for p in doc["paths"][path]["get"]["parameters"] if p["in"] == "query"}


def test_the_document_is_openapi_3_1_with_every_reference_defined() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    schemas = doc["components"]["schemas"]
    text = repr(doc)
    for name in {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}:
        assert name in schemas, name
    for path, item in doc["paths"].items():
        for name in (seg[1:-1] for seg in path.split("/") if seg.startswith("{")):
            declared = {p["name"] for op in item.values() for p in op.get("parameters", []) if p["in"] == "path"}
            assert name in declared, (path, name)


def test_every_route_the_router_serves_is_documented_and_nothing_else() -> None:
    served = {(route.path, method) for route in ROUTES for method in route.methods if method != "OPTIONS"}
    assert served == operations(document())
    public = {route.path for route in ROUTES if route.public}
    for path, item in document()["paths"].items():
        for op in item.values():
            assert (op.get("security") == []) == (path in public), path


def test_documented_log_parameters_are_exactly_what_the_validator_accepts() -> None:
    doc = document()
    logs, export = parameters(doc, "/api/logs"), parameters(doc, "/api/logs.csv")
    assert set(logs) == set(FILTERS) | set(PAGING)
    assert set(export) == set(FILTERS)
    for name, spec in logs.items():
        schema = spec["schema"]
        if "enum" in schema:
            assert schema["enum"] == list(CHOICES[name]) and schema["default"] == CHOICES[name][0]
            for value in schema["enum"]:
                assert getattr(parse_query(f"{name}={value}"), name) == value
            with pytest.raises(QueryError):
                parse_query(f"{name}=not-{schema['enum'][0]}")
        elif schema.get("format") == "date":
            parse_query(f"{name}=2024-02-29")
            with pytest.raises(QueryError):
                parse_query(f"{name}=2024-02-30")
        else:
            assert schema["type"] == "integer"
            parse_query(f"{name}={schema['minimum']}")
            parse_query(f"{name}={schema['maximum']}")
            for bad in (schema["minimum"] - 1, schema["maximum"] + 1):
                with pytest.raises(QueryError):
                    parse_query(f"{name}={bad}")
    for name in PAGING:
        with pytest.raises(QueryError):
            parse_query(f"{name}=1", paged=False)
    with pytest.raises(QueryError):
        parse_query("undocumented=1")


@pytest.fixture
def client(secured: Secured) -> FlaskClient:
    return create_app("backup_console", str(SOURCE)).test_client()


def test_every_documented_operation_is_answered_by_its_route(
    client: FlaskClient, supabase: SupabaseJwksFake, secured: Secured
) -> None:
    """Through the real function: no documented operation meets "no such route" or 405."""
    headers = {"Authorization": f"Bearer {supabase.mint(MANAGER)}"}
    for path, method in sorted(operations(document())):
        url = path.format(**EXAMPLES)
        # A body each handler refuses or takes harmlessly (Run Backup Now's own tests run backups).
        body = {"value": True} if method == "PUT" else {"probe": True} if method == "POST" else None
        resp = client.open(url, method=method, headers=headers, json=body)
        assert resp.status_code != 405, (method, url)
        if resp.status_code == 404:
            assert "no such page or API route" not in resp.get_json()["error"], (method, url)
    served = client.get("/api/openapi.json")
    assert served.status_code == 200 and served.get_json() == document()
