"""Shared fixtures. The test command starts PostgreSQL, Redis and Mosquitto before pytest runs."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.brokers import PlainBroker
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


_BROKERS = pytest.StashKey[list[PlainBroker]]()


def pytest_configure(config: pytest.Config) -> None:
    """Once per run, in the process that runs the tests or, under pytest-xdist (``-n N``), in the
    controller before it starts its workers: empty Redis database 9, which tests own, and give
    each worker a Mosquitto of its own (``tests.support`` picks it by the worker's id)."""
    if hasattr(config, "workerinput"):
        return
    redis.Redis.from_url(REDIS_URL).flushdb()
    workers = config.getoption("numprocesses", None)
    if not isinstance(workers, int) or workers < 1:
        return
    directory = Path(tempfile.mkdtemp(prefix="naboom-test-mqtt-"))
    brokers = [PlainBroker(directory / f"gw{n}") for n in range(workers)]
    config.stash[_BROKERS] = brokers
    for broker in brokers:
        broker.start()
    os.environ["NABOOM_TEST_MQTT_PORTS"] = ",".join(str(broker.port) for broker in brokers)


def pytest_unconfigure(config: pytest.Config) -> None:
    brokers = config.stash.get(_BROKERS, [])
    for broker in brokers:
        broker.stop()
    if brokers:
        shutil.rmtree(brokers[0].directory.parent, ignore_errors=True)


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
