"""Region schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from naboom.schemas import Schema

RegionCode = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]


class RegionCreate(Schema):
    """A new region."""

    code: RegionCode
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "Africa/Johannesburg"


class RegionUpdate(Schema):
    """What may change about a region (never its code)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class RegionOut(Schema):
    """A region."""

    code: str
    name: str
    timezone: str
    created_at: datetime
