"""Shared fixtures. The test command starts PostgreSQL, Redis and Mosquitto before pytest runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support import (
    MQTT_HOST,
    MQTT_PORT,
    REDIS_URL,
    Server,
    Stack,
    create_database,
    drop_database,
    drop_mqtt_session,
)

VECTORS = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors" / "signing.json"


@pytest.fixture(scope="session")
def signing_vectors() -> dict:
    """The contract's signing test vectors."""
    return json.loads(VECTORS.read_text())


@pytest.fixture(scope="session", autouse=True)
def clean_redis() -> None:
    """Tests own Redis database 9; start each run from empty."""
    redis.Redis.from_url(REDIS_URL).flushdb()


@pytest.fixture(scope="module")
def real_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A migrated PostgreSQL database, Redis and the machine's Mosquitto."""
    url = create_database()
    stack = Stack(
        var_dir=tmp_path_factory.mktemp("var"),
        database_url=url,
        redis_url=REDIS_URL,
        mqtt_url=f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
    )
    stack.cli("migrate")
    yield stack
    drop_mqtt_session(stack.client_id)
    drop_database(url)


@pytest.fixture(scope="module")
def server(real_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``naboom serve`` on the real stack, for the whole module."""
    srv = Server(real_stack, tmp_path_factory.mktemp("logs") / "serve.log")
    srv.start()
    yield srv
    srv.stop()
