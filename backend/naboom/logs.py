"""Logging set-up: text or JSON lines, a request/message id on each line, and no secrets."""

from __future__ import annotations

import json
import logging
import logging.config
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

# The HTTP request or MQTT message being handled; every log line made while handling it carries it.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_TOKEN_IN_QUERY = re.compile(r"((?:^|[?&])token=)[^&\s\"]*")
# `password=x`, `"api_key": "x y"`, `secret: x`, `NABOOM_SMS_CALLBACK_SECRET=x`, `access_token=x` ...
_SECRET_FIELD = re.compile(
    r"""(?ix)
    ( \b[\w-]*(?:password|passwd|secret|api[_-]?key|token)[\w-]* ["']? \s* [:=] \s* )
    ( "[^"]*" | '[^']*' | [^"'\s&,;}]+ )
    """
)
# Credentials in URLs: scheme://user:password@host
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@/\s]+(@)", re.IGNORECASE)
_SECRET_KEY = re.compile(r"password|passwd|secret|api[_-]?key|token", re.IGNORECASE)
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
# Attributes every LogRecord has; anything else was passed as ``extra=`` and goes into the JSON.
# (uvicorn adds ``color_message``: the same text with terminal colours.)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName", "color_message"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def redact(text: str) -> str:
    """Mask tokens in query strings, secret-named fields and passwords in URLs."""
    text = _TOKEN_IN_QUERY.sub(r"\1[redacted]", text)
    text = _SECRET_FIELD.sub(_mask_field, text)
    return _URL_PASSWORD.sub(r"\1[redacted]\2", text)


def _mask_field(match: re.Match[str]) -> str:
    value = match.group(2)
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match.group(1)}{quote}[redacted]{quote}"


class RedactTokens(logging.Filter):
    """Live-feed clients pass ``?token=``; access log lines must not carry it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's arguments with the token masked."""
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_QUERY.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args
            )
        return True


class TextFormatter(logging.Formatter):
    """The developer's format, with the request id when there is one, redacted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line itself (before any traceback), with the request id."""
        line = super().formatMessage(record)
        rid = request_id.get()
        return f"{line} [{rid}]" if rid else line

    def format(self, record: logging.LogRecord) -> str:
        """One redacted line (plus traceback)."""
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, extras; redacted."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialise one record."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key in _STANDARD or key in entry:
                continue
            entry[key] = "[redacted]" if _SECRET_KEY.search(key) else _plain(value)
        if record.exc_info:
            entry["exc_info"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack_info"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact(str(value))


def configure_logging(level: str, fmt: str = "text") -> dict[str, object]:
    """Configure the root logger; returns the ``log_config`` to hand to uvicorn."""
    formatter = "naboom.logs.JsonFormatter" if fmt == "json" else "naboom.logs.TextFormatter"
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactTokens}},
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default", "filters": ["redact"]},
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }
    logging.config.dictConfig(config)
    return config


class RequestIdMiddleware:
    """Takes ``X-Request-ID`` (or makes one), puts it on every log line, echoes it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Bind the id for the request's lifetime."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-request-id"), "")
        # A client's id is kept only when it is short and plain: it ends up in logs.
        rid = given if _REQUEST_ID_OK.match(given) else uuid.uuid4().hex
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message["headers"] = [*message.get("headers", ()), header]  # type: ignore[typeddict-unknown-key]
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
