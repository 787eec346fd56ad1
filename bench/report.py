#!/usr/bin/env python
"""The benchmarks' table and plot from their JSON lines (the convention is in bench/README.md).

    .venv/bin/python bench/report.py bench/out/results-<timestamp>.jsonl [--out bench/out]

Writes ``report.md`` (one row per benchmark line, or per entry of its ``table``: measured,
ceiling, ratio, target, pass/fail, load average; then the ingest sweep's points and the
failures' reasons) and ``latency.png`` (publish→SSE p50/p99 against offered load from the sweep,
with the 50 ms target; fan-out p99 against clients beside the bare ceiling). Nothing here knows
a benchmark by name: it reads the keys every line shares.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SSE_TARGET_MS = 50
BOUNDS = {
    "measured_min": ("measured", ">="),
    "measured_max": ("measured", "<="),
    "ratio_min": ("ratio", ">="),
    "ratio_max": ("ratio", "<="),
}


@dataclass(frozen=True)
class Row:
    """One line of the table, already formatted."""

    bench: str
    measured: str
    ceiling: str
    ratio: str
    target: str
    verdict: str
    load: str


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a results file; a line that is not one becomes a failed entry."""
    lines = []
    for n, text in enumerate(path.read_text().splitlines(), 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            line = None
        if not isinstance(line, dict):
            line = {"bench": f"{path.name}:{n}", "ok": False, "error": "not a JSON object"}
        lines.append(line)
    return lines


def number(value: Any) -> str:
    """A readable number: thousands separated, at most one decimal (two below 10)."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:.2f}"


def figure(obj: Any) -> str:
    """``{"what", "value", "unit"}`` as ``5,528 SOS/s (what)``; a bare number as itself."""
    if obj is None:
        return "—"
    if not isinstance(obj, dict):
        return number(obj)
    text = number(obj.get("value"))
    if obj.get("unit"):
        text += f" {obj['unit']}"
    if obj.get("what"):
        text += f" ({obj['what']})"
    return text


def value_of(obj: Any) -> float | None:
    """The number in a ``measured``/``ceiling`` object (or a bare number)."""
    value = obj.get("value") if isinstance(obj, dict) else obj
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def load_text(load: Any) -> str:
    """``start → end`` from ``{"start", "end"}`` or ``[start, end]``."""
    if isinstance(load, dict):
        start, end = load.get("start"), load.get("end")
    elif isinstance(load, list | tuple) and len(load) == 2:
        start, end = load
    else:
        return "—"
    return f"{number(start)} → {number(end)}"


def verdict(line: dict[str, Any], entry: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether a row passes, and why not: the run's own checks, then each bound of its target."""
    reasons = []
    if not line.get("ok"):
        reasons.append(str(line.get("error") or "the run failed"))
    for key in ("lost", "doubled"):
        if line.get(key) != 0:
            reasons.append(f"{key} {'unknown' if line.get(key) is None else line[key]}")
    target = entry.get("target")
    if isinstance(target, dict):
        figures = {"measured": value_of(entry.get("measured")), "ratio": value_of(entry.get("ratio"))}
        for bound, (key, op) in BOUNDS.items():
            if bound not in target:
                continue
            have, limit = figures[key], float(target[bound])
            if have is None:
                reasons.append(f"no {key} to check against {op} {number(limit)}")
            elif (op == ">=" and have < limit) or (op == "<=" and have > limit):
                reasons.append(f"{key} {number(have)} not {op} {number(limit)}")
    return not reasons, reasons


def rows_of(line: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, entry) per table row: the ``table`` list when present, else the line itself."""
    name = str(line.get("bench", "?"))
    if line.get("variant"):
        name += f" {line['variant']}"
    if line.get("quick"):
        name += " (quick)"
    table = line.get("table")
    if isinstance(table, list) and table:
        return [(f"{name}: {entry.get('label', k + 1)}", entry) for k, entry in enumerate(table)]
    return [(name, line)]


def build_rows(lines: list[dict[str, Any]]) -> tuple[list[Row], list[str]]:
    """The table's rows and, for each failing one, a line saying why."""
    rows, failures = [], []
    for line in lines:
        for label, entry in rows_of(line):
            passed, reasons = verdict(line, entry)
            target = entry.get("target")
            target_text = target.get("text", "—") if isinstance(target, dict) else "—"
            rows.append(
                Row(
                    bench=label,
                    measured="see the sweep below" if entry.get("points") else figure(entry.get("measured")),
                    ceiling=figure(entry.get("ceiling")),
                    ratio=number(entry.get("ratio")),
                    target=target_text,
                    verdict="pass" if passed else "**FAIL**",
                    load=load_text(line.get("load_avg")),
                )
            )
            if not passed:
                failures.append(f"- {label}: {'; '.join(reasons)}")
    return rows, failures


def sweep_points(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every ``points`` entry with an offered rate and latencies, in offered order."""
    points = [
        p
        for line in lines
        for p in line.get("points") or []
        if isinstance(p, dict)
        and p.get("offered_per_s") is not None
        and isinstance(p.get("latency_ms"), dict)
    ]
    return sorted(points, key=lambda p: float(p["offered_per_s"]))


def series_name(line: dict[str, Any]) -> str:
    """A fan-out line's series: its variant without the ``n=…`` part (e.g. the transport)."""
    parts = [p for p in str(line.get("variant", "")).split() if not p.startswith("n=")]
    return " ".join(parts) or str(line.get("bench", ""))


def nan_if_none(value: float | None) -> float:
    """matplotlib leaves a gap at NaN."""
    return float("nan") if value is None else float(value)


def markdown(lines: list[dict[str, Any]], source: str = "") -> str:
    """The whole report.md."""
    rows, failures = build_rows(lines)
    out = ["# Benchmarks", ""]
    if source:
        out += [f"From `{source}`: {len(lines)} line(s), {sum(r.verdict == 'pass' for r in rows)} of "
                f"{len(rows)} row(s) pass. Load average: 1-minute, at the start → at the end of each run "
                "(2 cores: numbers measured above ~2 are not to be trusted).", ""]  # fmt: skip
    out += [
        "| benchmark | measured | ceiling | ratio | target | pass/fail | load average |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cells = [r.bench, r.measured, r.ceiling, r.ratio, r.target, r.verdict, r.load]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    points = sweep_points(lines)
    if points:
        out += ["", "## Ingest sweep: publish→SSE latency against offered load", ""]
        out += [
            "| offered SOS/s | accepted SOS/s | p50 ms | p99 ms | lost | doubled |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for p in points:
            lat = p["latency_ms"]
            out.append(
                f"| {number(p['offered_per_s'])} | {number(p.get('accepted_per_s'))} | {number(lat.get('p50'))} "
                f"| {number(lat.get('p99'))} | {number(p.get('lost'))} | {number(p.get('doubled'))} |"
            )
    if failures:
        out += ["", "## Failures", "", *failures]
    return "\n".join(out) + "\n"


def plot(lines: list[dict[str, Any]], path: Path) -> None:
    """latency.png: the sweep's p50/p99 against offered load (50 ms target); fan-out p99 against clients."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    # On a log axis, label only the 1-2-5 steps: the rest crowd each other.
    steps = FuncFormatter(lambda v, _pos: f"{v:g}" if f"{v:g}"[0] in "125" else "")

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    points = sweep_points(lines)
    if points:
        offered = [float(p["offered_per_s"]) for p in points]
        for key, style in (("p50", "o-"), ("p99", "s-")):
            ys = [p["latency_ms"].get(key) for p in points]
            left.plot(offered, [nan_if_none(y) for y in ys], style, label=key)
        left.set_yscale("log")
        left.yaxis.set_major_formatter(plain)
        left.yaxis.set_minor_formatter(steps)
    else:
        left.text(
            0.5, 0.5, "no ingest sweep in these results", ha="center", va="center", transform=left.transAxes
        )
    left.axhline(
        SSE_TARGET_MS, color="red", linestyle="--", label=f"target {SSE_TARGET_MS} ms (p99 at 1,000/s)"
    )
    left.set_xlabel("offered load (SOS/s)")
    left.set_ylabel("publish → SSE (ms)")
    left.set_title("Ingest: latency against offered load")
    left.grid(True, which="both", alpha=0.3)
    left.legend(loc="upper left")

    groups: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if line.get("clients") and value_of(line.get("measured")) is not None:
            groups.setdefault(series_name(line), []).append(line)
    ticks: set[int] = set()
    for name, group in sorted(groups.items()):
        group.sort(key=lambda line: int(line["clients"]))
        clients = [int(line["clients"]) for line in group]
        ticks.update(clients)
        ceilings = [value_of(line.get("ceiling")) for line in group]
        shown = right.plot(
            clients, [value_of(line["measured"]) for line in group], "o-", label=f"naboom {name}"
        )
        color = shown[0].get_color()
        right.plot(clients, [nan_if_none(c) for c in ceilings], "s--", color=color, label=f"bare {name}")
        right.plot(
            clients, [nan_if_none(c and 3 * c) for c in ceilings], "x:", color=color, label=f"3 x bare {name}"
        )
    if ticks:
        right.set_xticks(sorted(ticks), [f"{c:,}" for c in sorted(ticks)])
    else:
        right.text(
            0.5, 0.5, "no fan-out in these results", ha="center", va="center", transform=right.transAxes
        )
    right.set_xlabel("live clients")
    right.set_ylabel("commit → last client, p99 (ms)")
    right.set_title("Fan-out against the bare ceiling")
    right.grid(True, which="both", alpha=0.3)
    if ticks:
        right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def failed_line(name: str, error: str, load: tuple[float, float], variant: str = "") -> dict[str, Any]:
    """The line ``bench/run`` records for a script that is missing or printed no JSON line."""
    line: dict[str, Any] = {"bench": name, "ok": False, "lost": None, "doubled": None}
    line["load_avg"] = {"start": load[0], "end": load[1]}
    if variant:
        line["variant"] = variant
    line["error"] = error
    return line


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "results", type=Path, nargs="?", help="a results-<timestamp>.jsonl written by bench/run"
    )
    parser.add_argument(
        "--out", type=Path, help="where report.md and latency.png go (default: beside results)"
    )
    # For bench/run: print the failure line of a script that gave none (NAME ERROR LOAD_START LOAD_END [VARIANT]).
    parser.add_argument("--failed", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.failed:
        name, error, start, end, *variant = args.failed
        print(json.dumps(failed_line(name, error, (float(start), float(end)), " ".join(variant))))
        return
    if args.results is None:
        parser.error("the results file is missing")
    out = args.out or args.results.parent
    out.mkdir(parents=True, exist_ok=True)
    lines = read_lines(args.results)
    (out / "report.md").write_text(markdown(lines, source=args.results.name))
    plot(lines, out / "latency.png")
    rows, failures = build_rows(lines)
    print(f"{out / 'report.md'}: {len(rows) - len(failures)} of {len(rows)} rows pass", file=sys.stderr)


if __name__ == "__main__":
    main()
