"""bench/report.py: the table and the plot from benchmark JSON lines (bench/README.md's convention)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    # bench/ holds scripts, not a package: load the file itself.
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


report = _load("report")

LINES = [
    {
        "bench": "ingest",
        "ok": True,
        "lost": 0,
        "doubled": 0,
        "load_avg": {"start": 0.41, "end": 1.62},
        "variant": "n=30000",
        "measured": {"what": "accepted SOS/s", "value": 5528.0, "unit": "SOS/s"},
        "ceiling": {"what": "bare aiomqtt", "value": 9193.0, "unit": "msg/s"},
        "ratio": 0.6,
        "target": {"text": ">= 0.5 x ceiling and >= 5,000 SOS/s", "ratio_min": 0.5, "measured_min": 5000},
    },
    {
        "bench": "ingest",
        "ok": True,
        "lost": 0,
        "doubled": 0,
        "load_avg": [0.5, 0.7],
        "variant": "sweep",
        "points": [
            {"offered_per_s": 2000, "accepted_per_s": 1971.0, "latency_ms": {"p50": 39.2, "p99": 251.5}},
            {"offered_per_s": 1000, "accepted_per_s": 999.0, "latency_ms": {"p50": 17.5, "p99": 35.9}},
        ],
    },
    {
        "bench": "fanout",
        "ok": True,
        "lost": 0,
        "doubled": 0,
        "load_avg": {"start": 1.0, "end": 1.1},
        "variant": "n=5000 sse",
        "clients": 5000,
        "measured": {"what": "p99", "value": 240.0, "unit": "ms"},
        "ceiling": {"what": "bare asyncio p99", "value": 60.0, "unit": "ms"},
        "ratio": 4.0,
        "target": {"text": "p99 <= 3 x ceiling", "ratio_max": 3},
    },
    {
        "bench": "tasks",
        "ok": True,
        "lost": 0,
        "doubled": 0,
        "load_avg": {"start": 1.0, "end": 1.0},
        "table": [
            {"label": "1 worker", "measured": {"what": "SMS/s", "value": 70.0, "unit": "SMS/s"}},
            {
                "label": "2 workers",
                "measured": {"what": "SMS/s", "value": 120.0, "unit": "SMS/s"},
                "ratio": 0.86,
            },
        ],
    },
    {
        "bench": "dupstorm",
        "ok": True,
        "lost": 0,
        "doubled": 1,
        "load_avg": {"start": 1.0, "end": 1.0},
        "measured": {"what": "restart to caught up", "value": 3.1, "unit": "s"},
    },
]


def _rows() -> dict[str, Any]:
    rows, _ = report.build_rows([*LINES, report.failed_line("api", "exit 1, no JSON line", (0.2, 0.3))])
    return {r.bench: r for r in rows}


def test_every_line_or_table_entry_becomes_one_row_judged_by_its_bounds() -> None:
    rows = _rows()
    assert list(rows) == [
        "ingest n=30000",
        "ingest sweep",
        "fanout n=5000 sse",
        "tasks: 1 worker",
        "tasks: 2 workers",
        "dupstorm",
        "api",
    ]
    assert rows["ingest n=30000"].verdict == "pass"
    assert rows["ingest n=30000"].measured == "5,528 SOS/s (accepted SOS/s)"
    assert rows["ingest n=30000"].load == "0.41 → 1.62"
    assert rows["ingest sweep"].load == "0.50 → 0.70"
    assert rows["fanout n=5000 sse"].verdict == "**FAIL**"  # ratio 4 > 3
    assert rows["tasks: 2 workers"].verdict == "pass"  # no target: reported, not judged
    assert rows["dupstorm"].verdict == "**FAIL**"  # a doubled SOS fails whatever the figures
    assert rows["api"].verdict == "**FAIL**"


def test_the_markdown_has_the_table_the_sweep_in_offered_order_and_the_reasons() -> None:
    text = report.markdown([*LINES, report.failed_line("api", "timed out", (0.2, 0.3), "n=1")])
    assert "| benchmark | measured | ceiling | ratio | target | pass/fail | load average |" in text
    assert "| ingest n=30000 | 5,528 SOS/s (accepted SOS/s) | 9,193 msg/s (bare aiomqtt) | 0.60 |" in text
    sweep = text[text.index("## Ingest sweep") :]
    assert sweep.index("| 1,000 |") < sweep.index("| 2,000 |")
    assert "- fanout n=5000 sse: ratio 4.00 not <= 3.00" in text
    assert "- dupstorm: doubled 1" in text
    assert "- api n=1: timed out; lost unknown; doubled unknown" in text


def test_a_results_file_gives_report_md_and_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results = tmp_path / "results-1.jsonl"
    results.write_text("".join(json.dumps(line) + "\n" for line in LINES) + "not json\n")
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(BENCH / "report.py"), str(results), "--out", str(out)], check=True)
    assert "results-1.jsonl:6" in (out / "report.md").read_text()  # the broken line is a failed row
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plot_is_written_without_sweep_or_fanout(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report.plot([LINES[-1]], tmp_path / "latency.png")
    assert (tmp_path / "latency.png").stat().st_size > 1000
