"""Tokens passed in live-feed URLs never reach the access log."""

from __future__ import annotations

import logging

from naboom.logs import RedactTokens


def test_access_log_lines_mask_the_query_token() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/panic/api/stream?region=ZA-LP&token=eyJhbGc.secret.sig", "1.1", 200), None,
    )
    RedactTokens().filter(record)
    line = record.getMessage()
    assert "eyJhbGc" not in line
    assert "/panic/api/stream?region=ZA-LP&token=[redacted]" in line
