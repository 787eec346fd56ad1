"""The shared base of every msgspec schema at the system's boundaries."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

import msgspec
from litestar.params import QueryParameter

T = TypeVar("T")

# Deeper pages than this are a mistake; unbounded, an offset overflows the database's bigint (500).
MAX_OFFSET = 2**31 - 1
Limit = Annotated[int, QueryParameter(ge=1, le=500, description="Page size")]
Offset = Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET, description="Items to skip")]


class Schema(msgspec.Struct, kw_only=True, omit_defaults=False, forbid_unknown_fields=True):
    """Base struct: keyword-only, strict about unknown fields from clients."""


class Page(Schema, Generic[T]):
    """Every list answers in this shape."""

    items: list[T]
    total: int
    limit: int
    offset: int


class ProblemDetails(msgspec.Struct, kw_only=True):
    """An RFC 9457 error body (``application/problem+json``); members beyond these are extensions."""

    status: int
    title: str
    detail: str
    type: str | None = None
    instance: str | None = None
    # 400: what was wrong with each field of a rejected request.
    errors: list[dict[str, Any]] | None = None
    # 429: seconds until a retry can succeed (also in ``Retry-After``).
    retry_after: int | None = None
    # A refused SOS: the reason code of CONTRACT §1.
    reason: str | None = None
