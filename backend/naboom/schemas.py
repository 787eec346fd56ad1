"""The shared base of every msgspec schema at the system's boundaries."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

T = TypeVar("T")


class Schema(msgspec.Struct, kw_only=True, omit_defaults=False, forbid_unknown_fields=True):
    """Base struct: keyword-only, strict about unknown fields from clients."""


class Page(Schema, Generic[T]):
    """Every list answers in this shape."""

    items: list[T]
    total: int
    limit: int
    offset: int
