"""The Clickatell provider: the request it makes and how each kind of answer is classified."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

from naboom.notify.providers import (
    ClickatellProvider,
    PermanentSmsError,
    RetriableSmsError,
    UnknownOutcomeError,
    configured_providers,
    mask_phone,
)
from naboom.settings import Settings

KEY = "secret-api-key"
Handler = Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]


def _provider(handler: Handler, timeout: float = 5.0) -> ClickatellProvider:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return ClickatellProvider("clickatell", client, "https://gateway.test", KEY, timeout)


def _answer(status: int, body: object) -> Handler:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    return handler


async def test_a_send_posts_one_sms_message_with_the_key_in_authorization_and_returns_the_gateway_id() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"messages": [{"apiMessageId": "abc123", "accepted": True, "to": "27821234567", "error": None}], "error": None})

    assert await _provider(handler).send("+27821234567", "Help", "msg-1") == "abc123"
    (request,) = seen
    assert request.method == "POST" and str(request.url) == "https://gateway.test/v1/message"
    assert request.headers["Authorization"] == KEY
    assert json.loads(request.content) == {
        "messages": [{"channel": "sms", "to": "27821234567", "content": "Help", "clientMessageId": "msg-1"}]
    }


@pytest.mark.parametrize("status", [500, 502, 503, 429, 401])
async def test_server_errors_rate_limits_and_refused_credentials_are_retriable(status: int) -> None:
    with pytest.raises(RetriableSmsError, match=str(status)):
        await _provider(_answer(status, {"error": {"code": 19, "description": "Internal error, please retry"}})).send(
            "+27821234567", "x", "m"
        )


async def test_an_invalid_number_is_refused_for_good() -> None:
    body = {"messages": [{"apiMessageId": None, "accepted": False, "to": "27", "error": {"code": 25, "description": "Invalid recipient address"}}], "error": None}
    with pytest.raises(PermanentSmsError, match="Invalid recipient address"):
        await _provider(_answer(400, body)).send("+27821234567", "x", "m")


async def test_a_clickatell_rate_limit_code_on_a_400_is_retriable() -> None:
    with pytest.raises(RetriableSmsError, match="Rate limit"):
        await _provider(_answer(400, {"error": {"code": 43, "description": "Rate limit"}})).send("+27821234567", "x", "m")


async def test_connection_refused_is_retriable() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(RetriableSmsError, match="could not connect"):
        await _provider(handler).send("+27821234567", "x", "m")


async def test_no_answer_in_time_is_an_unknown_outcome() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(202)

    with pytest.raises(UnknownOutcomeError, match="may have accepted"):
        await _provider(handler, timeout=0.05).send("+27821234567", "x", "m")


async def test_a_success_status_without_a_message_entry_is_an_unknown_outcome() -> None:
    with pytest.raises(UnknownOutcomeError):
        await _provider(_answer(202, {"messages": [], "error": None})).send("+27821234567", "x", "m")


def test_the_api_key_is_not_in_the_providers_repr_and_phone_numbers_are_masked() -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError

    assert KEY not in repr(_provider(never))
    assert mask_phone("+27821234567") == "+278*****567"


def test_clickatell_without_an_api_key_is_a_configuration_error() -> None:
    settings = Settings.from_env({"NABOOM_SECRET_KEY": "k", "NABOOM_VAR_DIR": "var-unused", "NABOOM_SMS_PROVIDER": "clickatell"})
    with pytest.raises(ValueError, match="NABOOM_CLICKATELL_API_KEY"):
        configured_providers(settings, httpx.AsyncClient())


def test_a_fallback_provider_comes_second() -> None:
    settings = Settings.from_env({
        "NABOOM_SECRET_KEY": "k", "NABOOM_VAR_DIR": "var-unused", "NABOOM_SMS_PROVIDER": "clickatell",
        "NABOOM_CLICKATELL_API_KEY": "a", "NABOOM_SMS_FALLBACK_PROVIDER": "clickatell",
        "NABOOM_FALLBACK_CLICKATELL_API_KEY": "b", "NABOOM_FALLBACK_CLICKATELL_URL": "https://second.test",
    })
    providers = configured_providers(settings, httpx.AsyncClient())
    assert [p.name for p in providers] == ["clickatell", "clickatell-fallback"]
