"""CONTRACT §1 signing rule against the shared test vectors."""

from __future__ import annotations

import pytest

from naboom.ingest.signing import canonical_body, sign, signature_matches


def test_every_vector_verifies_or_fails_as_marked_with_the_key_its_kid_names(signing_vectors: dict) -> None:
    assert signing_vectors["cases"], "the vector file has no cases"
    for case in signing_vectors["cases"]:
        payload = case["payload"]
        secret = signing_vectors["keys"][payload["pid"]][str(payload.get("kid", 1))]
        assert signature_matches(payload, secret, payload["sig"]) is case["valid"], case["name"]


@pytest.mark.parametrize("field", ["canonical"])
def test_canonical_body_matches_the_vectors(signing_vectors: dict, field: str) -> None:
    for case in signing_vectors["cases"]:
        if case["valid"]:
            assert canonical_body(case["payload"]).decode() == case[field], case["name"]


def test_signing_reproduces_the_vector_signatures(signing_vectors: dict) -> None:
    for case in signing_vectors["cases"]:
        if case["valid"]:
            assert sign(case["payload"], case["secret_b64"]) == case["payload"]["sig"], case["name"]
