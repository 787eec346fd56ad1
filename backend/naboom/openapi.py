"""The OpenAPI document's error side: every operation lists the problem details it can answer.

A route declares what its domain can answer (``responses=problems(404, 409)``). What follows
from how a route is wired is added to every route by :func:`document_problems`, so a new route
cannot forget it: 400 (parameters, body or Host refused), 401 (no live session, unless the path
is public), 403 (a guard, or a cookie session without its CSRF header on an unsafe method) and
404 (a path parameter naming nothing the caller may see).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from litestar import Litestar

# Litestar's own struct schema generator, extended below; not exported publicly.
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Schema as OpenAPISchema
from litestar.openapi.spec import SecurityRequirement
from litestar.plugins import OpenAPISchemaPlugin
from litestar.routes import HTTPRoute
from litestar.typing import FieldDefinition

from naboom.schemas import ProblemDetails, Schema

PROBLEM_MEDIA_TYPE = "application/problem+json"

# What each status means when a route says nothing more specific.
MEANING: Mapping[int, str] = {
    400: "The request was refused before it was understood: a parameter or the body failed validation "
    "(`errors` lists each), or the Host header names a host this server does not serve",
    401: "No live session: log in and send `Authorization: Bearer <token>` or the session cookie",
    403: "Authenticated, but not allowed",
    404: "Nothing by that name, or it is outside the caller's regions",
    409: "The request clashes with the current state",
    422: "Well-formed, but not acceptable",
    429: "Too many requests: wait for `Retry-After` seconds",
}
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SECURITY: list[SecurityRequirement] = [{"bearer": []}, {"session": []}]


def problems(*codes: int, why: Mapping[int, str] | None = None) -> dict[int, ResponseSpec]:
    """Problem-details responses for ``codes``; ``why`` says what a status means on this route."""
    why = why or {}
    return {code: _spec(why.get(code) or MEANING[code]) for code in codes}


def _spec(description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=ProblemDetails, description=description, media_type=PROBLEM_MEDIA_TYPE, generate_examples=False
    )


def _implied(route: HTTPRoute, methods: Iterable[str], guarded: bool, public: bool) -> dict[int, str]:
    """What a route's wiring alone can answer."""
    implied = {400: MEANING[400]}
    if not public:
        implied[401] = MEANING[401]
        reasons = []
        if guarded:
            reasons.append("Only admins may call this")
        if _UNSAFE.intersection(methods):
            reasons.append("A cookie session sent no valid `X-CSRF-Token` header")
        if reasons:
            implied[403] = "; or: ".join(reasons)
    if route.path_parameters:
        implied[404] = MEANING[404]
    return implied


def document_problems(app: Litestar, public_paths: Iterable[str]) -> None:
    """Add the implied problem responses and the security requirement to every HTTP operation.

    Call before the first request: Litestar builds the document lazily, from these handlers.
    """
    public = [re.compile(p) for p in public_paths]
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            is_public = bool(handler.opt.get("exclude_from_auth")) or any(p.search(route.path) for p in public)
            implied = _implied(route, handler.http_methods, bool(handler.resolve_guards()), is_public)
            declared = dict(handler.responses or {})
            merged: dict[int, ResponseSpec] = {}
            for code in sorted(implied.keys() | declared.keys()):
                if code in declared and code in implied and declared[code].description != implied[code]:
                    merged[code] = _spec(f"{declared[code].description}; or: {implied[code]}")
                else:
                    merged[code] = declared.get(code) or _spec(implied[code])
            handler.responses = merged
            # Public routes need no credentials; the rest take the Bearer token or the session cookie.
            handler.security = [] if is_public else list(SECURITY)


class StrictSchemaPlugin(OpenAPISchemaPlugin):
    """Say ``additionalProperties: false`` for structs that refuse unknown fields (no mass assignment)."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        """Our own boundary structs."""
        return not field_definition.is_union and field_definition.is_subclass_of(Schema)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> OpenAPISchema:
        """Litestar's struct schema, closed to unknown members."""
        schema = StructSchemaPlugin().to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema
