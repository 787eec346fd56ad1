"""Helpers for the REST API tests: a client per user, problem-details checks, session ids."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from tests.support import Stack, unique_region

PROBLEM_JSON = "application/problem+json"
PASSWORD = "correct-horse-1"


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """``r`` is an RFC 9457 problem with ``status``; returns its body."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith(PROBLEM_JSON), r.headers["content-type"]
    problem = r.json()
    assert problem["status"] == status and problem["title"] and problem["detail"], problem
    return problem  # type: ignore[no-any-return]


def session_id(token: str) -> str:
    """The server-side session a token names (its ``jti``)."""
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


@dataclass
class Api:
    """One user's Bearer-authenticated view of the REST API."""

    stack: Stack
    token: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.stack.base_url}{path}", headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None) -> httpx.Response:
        return self.request("POST", path, json=json)

    def patch(self, path: str, json: Any) -> httpx.Response:
        return self.request("PATCH", path, json=json)

    def ok(self, method: str, path: str, json: Any = None, status: int | None = None) -> Any:
        """The JSON body of a successful request (``status`` exactly, when given)."""
        r = self.request(method, path, json=json)
        assert r.status_code == status if status else r.is_success, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def new_user(self, role: str, *regions: str, password: str = PASSWORD) -> dict[str, Any]:
        """Create a uniquely named user through ``POST /api/users`` (this Api must be an admin's)."""
        name = f"{role[:2]}-{uuid.uuid4().hex[:10]}"
        body = {"username": name, "password": password, "role": role, "regions": list(regions)}
        return dict(self.ok("POST", "/api/users", body, status=201))

    def new_region(self) -> str:
        """A region created through ``POST /api/regions`` (this Api must be an admin's)."""
        code = unique_region()
        self.ok("POST", "/api/regions", {"code": code, "name": f"Region {code}"}, status=201)
        return code

    def login_as(self, user: dict[str, Any], password: str = PASSWORD) -> Api:
        """A new session of ``user``."""
        return Api(self.stack, self.stack.login(user["username"], password))
