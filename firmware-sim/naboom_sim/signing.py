"""The contract's SOS signature: HMAC-SHA256 over the canonical body, exchanged as base64.

Written here rather than imported from the backend so the simulator checks the contract the
way a device maker would implement it (tested against the shared vectors).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

CANONICAL_KEYS = ("pid", "ts", "nonce", "msg", "lat", "lng", "acc", "kid")


def canonical_body(payload: Mapping[str, Any]) -> bytes:
    """The signed bytes: the canonical keys present, sorted, compact, non-ASCII escaped (``json.dumps``'s default)."""
    body = {key: payload[key] for key in CANONICAL_KEYS if key in payload}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def signature(payload: Mapping[str, Any], secret_b64: str) -> str:
    """``base64(HMAC-SHA256(secret, canonical_body(payload)))``."""
    key = base64.b64decode(secret_b64, validate=True)
    return base64.b64encode(hmac.new(key, canonical_body(payload), hashlib.sha256).digest()).decode("ascii")


def sign(payload: Mapping[str, Any], secret_b64: str) -> dict[str, Any]:
    """A copy of ``payload`` with its ``sig`` set (any old ``sig`` is not part of the body)."""
    signed = {key: value for key, value in payload.items() if key != "sig"}
    signed["sig"] = signature(signed, secret_b64)
    return signed


def verify(payload: Mapping[str, Any], secret_b64: str) -> bool:
    """Whether ``payload['sig']`` is the signature of its body under ``secret_b64`` (constant-time)."""
    sig = payload.get("sig")
    return isinstance(sig, str) and hmac.compare_digest(sig, signature(payload, secret_b64))
