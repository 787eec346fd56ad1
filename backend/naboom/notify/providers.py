"""SMS gateways: the provider interface, Clickatell's Platform REST API, and a console stand-in.

What can go wrong with a send, and what the sender does about it::

    SmsError
    ├── RetriableSmsError     refused for now (5xx, 429, connection refused, bad credentials): try again
    ├── PermanentSmsError     refused for good (invalid number, …): the message has failed
    └── UnknownOutcomeError   no answer after the request may have reached the gateway (timeout)

Only the first and the last count against a provider's circuit breaker: a refused number says
nothing about the gateway's health.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import msgspec

from naboom.settings import Settings

log = logging.getLogger(__name__)

CONSOLE = "console"
CLICKATELL = "clickatell"
KINDS = (CONSOLE, CLICKATELL)
# Clickatell error codes that mean "not now" rather than "never" (internal error, retry, rate limit).
_CLICKATELL_RETRIABLE_CODES = frozenset({18, 19, 43})
# The whole integration is refused (key, account, balance): every message would be, so it is the
# gateway that is unusable, and the fallback should take over.
_PROVIDER_LEVEL_STATUSES = frozenset({401, 402, 403, 429})


class SmsError(Exception):
    """A send that did not end with the gateway accepting the message."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class RetriableSmsError(SmsError):
    """The gateway did not take the message this time; another attempt may succeed."""


class PermanentSmsError(SmsError):
    """The gateway refused this message for good; retrying cannot help."""


class UnknownOutcomeError(SmsError):
    """The request may have reached the gateway but no answer came: it may or may not send."""


class SmsProvider(Protocol):
    """A gateway that takes one SMS at a time."""

    name: str
    kind: str

    async def send(self, to: str, body: str, client_message_id: str) -> str:
        """Hand over one SMS; returns the gateway's id for it, or raises an :class:`SmsError`."""
        ...


def mask_phone(phone: str) -> str:
    """A phone number fit for logs: the country prefix and the last three digits."""
    if len(phone) <= 6:
        return "*" * len(phone)
    return f"{phone[:4]}{'*' * (len(phone) - 7)}{phone[-3:]}"


def without_phone(text: str, phone: str) -> str:
    """``text`` (a gateway's error, say) with ``phone``, with or without its ``+``, masked."""
    digits = phone.removeprefix("+")
    return text.replace(phone, mask_phone(phone)).replace(digits, mask_phone(digits)) if digits else text


class ConsoleProvider:
    """Development: logs that it "sent" the message and makes up an id."""

    kind = CONSOLE

    def __init__(self, name: str = CONSOLE) -> None:
        self.name = name

    async def send(self, to: str, body: str, client_message_id: str) -> str:
        """Log the message instead of sending it."""
        message_id = f"console-{uuid.uuid4().hex}"
        log.info("console SMS to %s (%s): %s", mask_phone(to), message_id, body)
        return message_id


class _SendError(msgspec.Struct):
    code: int | str | None = None
    description: str | None = None


class _SentMessage(msgspec.Struct):
    accepted: bool = False
    apiMessageId: str | None = None
    to: str | None = None
    error: _SendError | str | None = None


class _SendResponse(msgspec.Struct):
    messages: list[_SentMessage] = msgspec.field(default_factory=list)
    error: _SendError | str | None = None


def _describe(error: _SendError | str | None) -> tuple[int | None, str]:
    """Clickatell's error as (code, text)."""
    if error is None:
        return None, "no error description"
    if isinstance(error, str):
        return None, error
    code = int(error.code) if isinstance(error.code, int) or (isinstance(error.code, str) and error.code.isdigit()) else None
    text = error.description or "no error description"
    return code, f"{text} (error {error.code})" if error.code is not None else text


class ClickatellProvider:
    """Clickatell's Platform REST API: ``POST {base}/v1/message`` with the API key in ``Authorization``.

    One request per SMS over the process's shared httpx client. The whole exchange is bounded by
    ``timeout``; after that the outcome is unknown (the gateway may have the message).
    """

    kind = CLICKATELL

    def __init__(self, name: str, http: httpx.AsyncClient, base_url: str, api_key: str, timeout: float) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._api_key = api_key
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"ClickatellProvider(name={self.name!r}, base_url={self.base_url!r})"

    async def send(self, to: str, body: str, client_message_id: str) -> str:
        """One SMS; the number goes without its ``+`` (Clickatell wants digits only)."""
        payload = {
            "messages": [
                {"channel": "sms", "to": to.removeprefix("+"), "content": body, "clientMessageId": client_message_id}
            ]
        }
        headers = {"Authorization": self._api_key, "Accept": "application/json"}
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._http.post(
                    f"{self.base_url}/v1/message", json=payload, headers=headers, timeout=self._timeout
                )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the gateway.
            raise RetriableSmsError(f"could not connect to {self.name}: {type(exc).__name__}") from None
        except (TimeoutError, httpx.TimeoutException):
            raise UnknownOutcomeError(
                f"no answer from {self.name} within {self._timeout:g}s; the gateway may have accepted the message"
            ) from None
        except httpx.TransportError as exc:
            raise UnknownOutcomeError(
                f"the connection to {self.name} failed after the request was sent ({type(exc).__name__}); "
                "the gateway may have accepted the message"
            ) from None
        return self._read(response)

    def _read(self, response: httpx.Response) -> str:
        status = response.status_code
        parsed = self._decode(response)
        if status >= 500:
            raise RetriableSmsError(f"{self.name} answered {status}: {self._error_text(parsed)}")
        if status in _PROVIDER_LEVEL_STATUSES:
            raise RetriableSmsError(f"{self.name} answered {status}: {self._error_text(parsed)}")
        if status >= 400:
            code, text = self._first_error(parsed)
            if code in _CLICKATELL_RETRIABLE_CODES:
                raise RetriableSmsError(f"{self.name} answered {status}: {text}")
            raise PermanentSmsError(f"{self.name} refused the message ({status}): {text}")
        if parsed is None or not parsed.messages:
            # A success status without the expected body: it took something, we cannot tell what.
            raise UnknownOutcomeError(f"{self.name} answered {status} without a message entry")
        sent = parsed.messages[0]
        if sent.accepted and sent.apiMessageId:
            return sent.apiMessageId
        code, text = _describe(sent.error)
        if code in _CLICKATELL_RETRIABLE_CODES:
            raise RetriableSmsError(f"{self.name} did not accept the message: {text}")
        raise PermanentSmsError(f"{self.name} refused the message: {text}")

    @staticmethod
    def _decode(response: httpx.Response) -> _SendResponse | None:
        try:
            return msgspec.json.decode(response.content, type=_SendResponse)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    @staticmethod
    def _first_error(parsed: _SendResponse | None) -> tuple[int | None, str]:
        if parsed is None:
            return None, "no readable error body"
        if parsed.error is not None:
            return _describe(parsed.error)
        for sent in parsed.messages:
            if sent.error is not None:
                return _describe(sent.error)
        return None, "no error description"

    def _error_text(self, parsed: _SendResponse | None) -> str:
        return self._first_error(parsed)[1]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One configured provider as the settings describe it (``problem`` says why it cannot send)."""

    name: str
    kind: str
    role: str
    url: str | None
    api_key: str | None = field(default=None, repr=False)
    problem: str | None = None


def provider_specs(settings: Settings) -> list[ProviderSpec]:
    """The primary provider, then the fallback if one is configured and differs from it."""
    specs = [
        _spec(settings.sms_provider, "primary", "NABOOM_SMS_PROVIDER", settings.clickatell_api_key,
              settings.clickatell_url, "NABOOM_CLICKATELL_API_KEY")
    ]
    if settings.sms_fallback_provider:
        fallback = _spec(
            settings.sms_fallback_provider, "fallback", "NABOOM_SMS_FALLBACK_PROVIDER",
            settings.fallback_clickatell_api_key, settings.fallback_clickatell_url, "NABOOM_FALLBACK_CLICKATELL_API_KEY",
        )
        if fallback.name != specs[0].name:
            specs.append(fallback)
    return specs


def _spec(kind: str, role: str, variable: str, api_key: str | None, url: str, key_variable: str) -> ProviderSpec:
    if kind == CONSOLE:
        return ProviderSpec(CONSOLE, CONSOLE, role, None)
    name = CLICKATELL if role == "primary" else f"{CLICKATELL}-fallback"
    if kind == CLICKATELL:
        problem = None if api_key else f"{key_variable} must be set when {variable}={CLICKATELL}"
        return ProviderSpec(name, CLICKATELL, role, url, api_key, problem)
    return ProviderSpec(name, kind, role, None, None, f"{variable} must be one of {', '.join(KINDS)}, got {kind!r}")


def configured_providers(settings: Settings, http: httpx.AsyncClient) -> list[SmsProvider]:
    """Every configured provider, primary first; ``ValueError`` names a setting that is missing or wrong."""
    providers: list[SmsProvider] = []
    for spec in provider_specs(settings):
        if spec.problem is not None:
            raise ValueError(spec.problem)
        if spec.kind == CONSOLE:
            providers.append(ConsoleProvider(spec.name))
        else:
            assert spec.url is not None and spec.api_key is not None
            providers.append(ClickatellProvider(spec.name, http, spec.url, spec.api_key, settings.sms_timeout_seconds))
    return providers
