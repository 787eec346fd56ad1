"""bench/broker.py: the duplicate storm's re-publish schedule and the one-incident-per-SOS count."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
_spec = importlib.util.spec_from_file_location("bench_broker", BENCH / "broker.py")
assert _spec is not None and _spec.loader is not None
broker = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = broker
_spec.loader.exec_module(broker)


def test_the_schedule_sends_each_sos_once_first_and_repeats_only_recent_ones() -> None:
    order = broker.dup_schedule(7000, 0.3, seed=8, window=1000)
    assert len(order) == 10_000
    assert set(order) == set(range(7000))
    assert sum(n - 1 for n in Counter(order).values()) == 3000
    sent = 0
    for index in order:
        if index == sent:
            sent += 1
        else:
            assert sent - 1000 <= index < sent  # a re-publish of one of the last 1,000 sent
    assert broker.dup_schedule(7000, 0.3, seed=8) == order  # the same seed, the same storm


def test_markers_count_missing_and_extra_incidents() -> None:
    rows = "load r-0|1\nload r-1|2\nload x-9|1\nother|1"
    assert broker.count_markers(rows, "r", 3) == (1, 3)  # r-2 missing; r-1 twice; two strangers
    assert broker.count_markers("load r-0|1\nload r-1|1", "r", 2) == (0, 0)
