"""The simulator's own signing code against every case of the contract's shared vectors."""

from __future__ import annotations

import json

import pytest

from naboom_sim.signing import canonical_body, sign, signature, verify
from tests.support import ROOT

# The contract's vectors live beside the repository, in ../shared (as tests/conftest.py finds them).
VECTORS = json.loads((ROOT.parent / "shared" / "vectors" / "signing.json").read_text())
CASES = VECTORS["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_canonical_body_matches_the_vector(case: dict) -> None:
    assert canonical_body(json.loads(case["json"])).decode() == case["canonical"]
    assert canonical_body(case["payload"]).decode() == case["canonical"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_signature_is_valid_exactly_when_the_vector_says(case: dict) -> None:
    payload = json.loads(case["json"])
    # Valid means: signed by the device's key named by the payload's own kid.
    device_key = VECTORS["keys"][payload["pid"]][str(payload.get("kid", 1))]
    assert verify(payload, device_key) is case["valid"]
    assert signature(payload, case["secret_b64"]) == payload["sig"] or not case["valid"]


def test_signing_covers_the_canonical_keys_only() -> None:
    secret = CASES[0]["secret_b64"]
    payload = {"pid": "d-1", "ts": 1, "nonce": "n", "kid": 1, "extra": "not signed"}
    signed = sign(payload, secret)
    assert signed["sig"] == signature({"pid": "d-1", "ts": 1, "nonce": "n", "kid": 1}, secret)
    assert "sig" not in payload and verify(signed, secret)
    assert not verify({**signed, "ts": 2}, secret)
