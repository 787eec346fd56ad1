"""The OpenAPI document: every operation states its problem answers and how to authenticate."""

from __future__ import annotations

import re
from typing import Any

import pytest

from naboom.app import PUBLIC_PATHS, create_app
from naboom.settings import Settings

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
PUBLIC = [re.compile(p) for p in PUBLIC_PATHS]


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings.from_env({"NABOOM_VAR_DIR": str(tmp_path_factory.mktemp("var"))})
    return create_app(settings, run_ingest=False).openapi_schema.to_schema()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in document["paths"].items() for method, op in item.items()]


def test_every_error_answer_is_documented_as_problem_details(document: dict[str, Any]) -> None:
    operations = _operations(document)
    assert len(operations) > 20
    for method, path, op in operations:
        errors = {code: r for code, r in op["responses"].items() if code.startswith("4")}
        assert "400" in errors, f"{method} {path}"
        for code, response in errors.items():
            assert response["content"] == PROBLEM, f"{method} {path} {code}: {response}"
            assert response["description"], f"{method} {path} {code}"


def test_protected_operations_document_401_403_and_their_credentials(document: dict[str, Any]) -> None:
    for method, path, op in _operations(document):
        public = any(p.search(path) for p in PUBLIC)
        if public:
            assert "security" not in op, f"{method} {path} needs no credentials"
            continue
        assert op["security"] == [{"bearer": []}, {"session": []}], f"{method} {path}"
        assert "401" in op["responses"], f"{method} {path}"
        if method in {"POST", "PATCH", "PUT", "DELETE"}:
            assert "X-CSRF-Token" in op["responses"]["403"]["description"], f"{method} {path}"
        if "{" in path:
            assert "404" in op["responses"], f"{method} {path}"
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert schemes["session"] == {
        "type": "apiKey", "name": "naboom_session", "in": "cookie",
        "description": schemes["session"]["description"],
    }


def test_admin_only_operations_say_so_in_their_403(document: dict[str, Any]) -> None:
    for path in ("/api/users", "/api/devices", "/api/audit"):
        assert "admins" in document["paths"][path]["get"]["responses"]["403"]["description"]


def test_routes_keep_their_own_meaning_of_a_status(document: dict[str, Any]) -> None:
    patch_user = document["paths"]["/api/users/{user_id}"]["patch"]["responses"]
    assert "no active admin" in patch_user["409"]["description"]
    login = document["paths"]["/api/auth/login"]["post"]["responses"]
    assert {"200", "400", "401", "429"} <= login.keys() and "Retry-After" in login["429"]["description"]


def test_request_bodies_refuse_unknown_members(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("DeviceCreate", "UserCreate", "UserUpdate", "PasswordReset", "RegionCreate", "LoginRequest"):
        assert schemas[name]["additionalProperties"] is False, name
    assert "secret" not in schemas["DeviceCreate"]["properties"]
    assert "password_hash" not in schemas["UserOut"]["properties"]
