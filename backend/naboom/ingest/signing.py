"""The SOS signing rule of CONTRACT §1, shared by the verifier, the CLI and the simulator."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

CANONICAL_KEYS = ("pid", "ts", "nonce", "msg", "lat", "lng", "acc", "kid")


def canonical_body(payload: Mapping[str, Any], keys: tuple[str, ...] = CANONICAL_KEYS) -> bytes:
    """The exact bytes field devices sign: Python's ``json.dumps`` with sorted keys, ASCII-escaped.

    ``keys`` are the signed fields (an SOS's by default; telemetry reports sign their own).
    """
    signed = {key: payload[key] for key in keys if key in payload}
    return json.dumps(signed, sort_keys=True, separators=(",", ":")).encode("ascii")


def sign(payload: Mapping[str, Any], secret_b64: str, keys: tuple[str, ...] = CANONICAL_KEYS) -> str:
    """Base64 HMAC-SHA256 of the canonical body under a base64 secret."""
    mac = hmac.new(base64.b64decode(secret_b64), canonical_body(payload, keys), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def signature_matches(
    payload: Mapping[str, Any], secret_b64: str, signature: str, keys: tuple[str, ...] = CANONICAL_KEYS
) -> bool:
    """Constant-time comparison of the given signature with the expected one."""
    return body_signature_matches(canonical_body(payload, keys), secret_b64, signature)


def body_signature_matches(body: bytes, secret_b64: str, signature: str) -> bool:
    """:func:`signature_matches` for a canonical body already made (the ingest also digests it)."""
    mac = hmac.new(base64.b64decode(secret_b64), body, hashlib.sha256)
    expected = base64.b64encode(mac.digest())
    return hmac.compare_digest(expected, signature.encode("ascii", "replace"))


def signed_payload(payload: Mapping[str, Any], secret_b64: str) -> dict[str, Any]:
    """The payload with its ``sig`` added, as a device would send it."""
    return {**payload, "sig": sign(payload, secret_b64)}
