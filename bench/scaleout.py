#!/usr/bin/env python
"""Scale-out benchmark: the ingest load against one, then two ``naboom serve`` processes.

    flock /tmp/naboom-bench.lock .venv/bin/python bench/scaleout.py                # 30,000 SOS flat out
    flock /tmp/naboom-bench.lock .venv/bin/python bench/scaleout.py --rate 1000    # latency at 1,000/s
    .venv/bin/python bench/scaleout.py --quick

Each size gets an installation of its own (``bench/ingest.py``'s: fresh database, Mosquitto,
Redis prefix, provisioned devices), so the second run starts as clean as the first. With two
processes they share the MQTT load through one ``$share`` group (``NABOOM_MQTT_SHARE_GROUP``,
a distinct ``NABOOM_MQTT_CLIENT_ID`` each) and the live feed through Redis: the simulator reads
the first process's SSE feed, a second reader the other's, and every incident must appear on
both, once. The measurements and checks of each size are ``bench/ingest.py``'s (rows counted,
sessions checked for unacknowledged messages after a SIGKILL, the bare-subscriber ceilings).

The JSON line (besides ``bench``, ``ok``, ``lost``, ``doubled``, ``load_avg``):

* ``table``: one row per size, ``{"label": "1 process" | "2 processes", "measured": accepted
  SOS/s, "ceiling": the bare aiomqtt subscriber, "ratio"}``.
* ``runs``: per size, ``processes`` and bench/ingest.py's keys (``accepted_per_s``,
  ``latency_ms``, ``commit_latency_ms``, ``feeds`` (what the second process's feed saw),
  ``serve_cpu_percent`` per process, ``ingest_batches`` over both, ``unacked``, ``ceilings``).
* ``speedup``: accepted/s with two processes ÷ with one.

Two processes on two cores share them with PostgreSQL, Mosquitto, Redis and the load itself:
the speed-up shows what a second process buys on this one machine, not on a second server.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import add_load_args, apply_quick, install, measure
from rig import Rig, bench_parser, log, run_bench


def one_size(args: argparse.Namespace, processes: int) -> dict[str, Any]:
    """A fresh installation with ``processes`` servers, measured like ``bench/ingest.py`` does."""
    with Rig(args, f"scaleout{processes}") as rig:
        result = measure(install(rig, args, processes=processes), args)
    return {"processes": processes, **result}


def body(args: argparse.Namespace) -> Any:
    def run(_rig: Rig) -> dict[str, Any]:
        runs = []
        for processes in (1, 2):
            log(f"--- {processes} process(es)")
            runs.append(one_size(args, processes))
        table = [
            {
                "label": f"{r['processes']} process" + ("es" if r["processes"] > 1 else ""),
                "measured": r.get("measured"),
                "ceiling": r.get("ceiling"),
                "ratio": r.get("ratio"),
            }
            for r in runs
        ]
        one, two = (r.get("accepted_per_s") for r in runs)
        return {
            "variant": f"rate={args.rate:g}" if args.rate else f"n={args.count}",
            "lost": sum(r["lost"] for r in runs),
            "doubled": sum(r["doubled"] for r in runs),
            "ok": all(r.get("unacked") == 0 for r in runs),
            "speedup": round(two / one, 2) if one and two else None,
            "table": table,
            "runs": runs,
        }

    return run


def main() -> None:
    parser = bench_parser(__doc__)
    add_load_args(parser)
    args = parser.parse_args()
    if args.sweep:
        parser.error("--sweep is bench/ingest.py's; give --count or --rate here")
    apply_quick(args)
    sys.exit(run_bench("scaleout", args, body(args)))


if __name__ == "__main__":
    main()
