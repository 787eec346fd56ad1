"""Signed SOS onto a broker at QoS 1 through the device simulator's clients, with PUBACKs counted.

The resilience benchmarks (``dupstorm``, ``backlog``) need what the simulator's ``load`` run does
not offer: an exact re-publish of an earlier signed payload (a device retrying after a lost
acknowledgement) and publishing while nobody consumes. They reuse its pieces: ``presign`` for the
payloads (markers ``load <run>-<seq>`` in the signed ``msg``) and ``Connections`` for the paho
clients. Publishing blocks; benchmarks run it in a thread while their event loop watches.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from naboom_sim.credentials import Credentials
from naboom_sim.load import Connections, Prepared
from naboom_sim.transport import parse_broker_url


def dup_schedule(distinct: int, dup_fraction: float, seed: int, window: int = 1000) -> list[int]:
    """Which distinct SOS each publish carries: ``distinct`` firsts plus re-publishes of recent ones.

    A re-publish repeats one of the last ``window`` distinct SOS already sent, as a device does when
    its acknowledgement went missing; ``dup_fraction`` of all publishes are re-publishes.
    """
    rng = random.Random(seed)
    total = round(distinct / (1 - dup_fraction))
    dups = set(rng.sample(range(1, total), total - distinct))
    order, sent = [], 0
    for slot in range(total):  # slot 0 is never a re-publish, so there is always one to repeat
        if slot in dups:
            order.append(rng.randrange(max(0, sent - window), sent))
        else:
            order.append(sent)
            sent += 1
    return order


@dataclass
class Published:
    """What the broker acknowledged, and when (monotonic seconds)."""

    sent: int
    acked: int
    t_start: float
    t_sent: float
    t_acked: float


class Publisher:
    """K simulator connections publishing QoS 1; counts the broker's PUBACKs across all of them."""

    def __init__(self, port: int, devices: list[Credentials], run: str, connections: int = 4) -> None:
        broker = parse_broker_url(f"mqtt://127.0.0.1:{port}")
        self._conns = Connections(broker, devices, connections, run)
        self._lock = threading.Lock()
        self._acked = 0
        self._last_ack = 0.0
        for client in self._conns.clients:
            client.on_publish = self._on_publish

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._lock:
            self._acked += 1
            self._last_ack = time.monotonic()

    def __enter__(self) -> Publisher:
        self._conns.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._conns.stop()

    def publish(
        self,
        items: list[Prepared],
        order: list[int] | None = None,
        rate: float = 0.0,
        progress: Callable[[int], None] | None = None,
        ack_timeout: float = 120.0,
    ) -> Published:
        """Publish ``items[order[i]]`` for each i (paced to ``rate``/s when set); wait for every PUBACK."""
        order = order if order is not None else list(range(len(items)))
        t_start = time.monotonic()
        for seq, index in enumerate(order):
            if rate:
                delay = t_start + seq / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            item = items[index]
            self._conns.client_for(item, seq).publish(item.topic, item.body, qos=1)
            if progress is not None:
                progress(seq + 1)
        t_sent = time.monotonic()
        deadline = t_sent + ack_timeout
        while self.acked < len(order) and time.monotonic() < deadline:
            time.sleep(0.02)
        return Published(len(order), self.acked, t_start, t_sent, self._last_ack)

    @property
    def acked(self) -> int:
        with self._lock:
            return self._acked


def count_markers(rows: str, run: str, distinct: int) -> tuple[int, int]:
    """(lost, doubled) from ``message|count`` lines: each ``load <run>-<i>``, i < distinct, exactly once."""
    seen: dict[str, int] = {}
    for line in rows.splitlines():
        message, _, count = line.rpartition("|")
        seen[message] = int(count)
    expected = {f"load {run}-{i}" for i in range(distinct)}
    lost = len(expected - seen.keys())
    doubled = sum(n - 1 for message, n in seen.items() if message in expected)
    doubled += sum(n for message, n in seen.items() if message not in expected)
    return lost, doubled
