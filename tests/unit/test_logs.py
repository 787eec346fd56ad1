"""Log lines: JSON or text, with the request id, and never a token, password or key."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime

import pytest

from naboom.logs import JsonFormatter, RedactTokens, TextFormatter, redact, request_id


def test_access_log_lines_mask_the_query_token() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/panic/api/stream?region=ZA-LP&token=eyJhbGc.secret.sig", "1.1", 200), None,
    )
    RedactTokens().filter(record)
    line = record.getMessage()
    assert "eyJhbGc" not in line
    assert "/panic/api/stream?region=ZA-LP&token=[redacted]" in line


def _record(msg: str, *args: object, name: str = "naboom.test", **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_time_level_logger_message_and_the_request_id() -> None:
    token = request_id.set("req-123")
    try:
        line = JsonFormatter().format(_record("ingest lost the broker at %s", "mqtt:1883", attempt=3))
    finally:
        request_id.reset(token)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "naboom.test"
    assert entry["message"] == "ingest lost the broker at mqtt:1883"
    assert entry["request_id"] == "req-123"
    assert entry["attempt"] == 3
    assert datetime.fromisoformat(entry["time"]).tzinfo is not None


def test_json_lines_without_a_request_leave_the_id_out_and_keep_tracebacks_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("naboom", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "request_id" not in entry
    assert "ValueError: boom" in entry["exc_info"]
    assert "\n" not in line


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("login with password=hunter2 failed", "hunter2"),
        ('gateway said {"api_key": "ck-live-99", "ok": false}', "ck-live-99"),
        ('config {"password": "two words", "region": "ZA-LP"}', "two words"),
        ("sending with access_token=tok-1&x=1", "tok-1"),
        ("NABOOM_SMS_CALLBACK_SECRET=cb-s3cret in env", "cb-s3cret"),
        ("client_secret: abc.def", "abc.def"),
        ("connecting to postgresql+asyncpg://naboom:pg-pass@db:5432/naboom", "pg-pass"),
        ("GET /panic/api/stream?region=ZA-LP&token=eyJ.x.y", "eyJ.x.y"),
    ],
)
def test_secrets_never_reach_a_log_line_in_either_format(message: str, secret: str) -> None:
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(_record(message))
        assert secret not in line
        assert "[redacted]" in line


def test_secret_named_extras_are_redacted_in_json() -> None:
    entry = json.loads(JsonFormatter().format(_record("configured", password="pw1", api_key="k1", region="ZA-LP")))
    assert entry["password"] == "[redacted]"
    assert entry["api_key"] == "[redacted]"
    assert entry["region"] == "ZA-LP"


def test_text_lines_show_the_request_id() -> None:
    token = request_id.set("mqtt:42")
    try:
        line = TextFormatter().format(_record("batch stored"))
    finally:
        request_id.reset(token)
    assert line.endswith("naboom.test: batch stored [mqtt:42]")


def test_redaction_leaves_ordinary_text_alone() -> None:
    text = "device btn-1 in ZA-LP sent SOS nonce=abc at mqtt://broker:1883"
    assert redact(text) == text
