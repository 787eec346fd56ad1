#!/usr/bin/env python
"""API benchmark: requests/s of ``GET /api/incidents`` and ``POST /panic/api/vehicle/ping``; one JSON line.

    .venv/bin/python bench/api.py                 # 10 s per endpoint and per server
    .venv/bin/python bench/api.py --quick         # 2 s each

``naboom serve`` runs on a fresh PostgreSQL database (Redis under the run's prefix, a Mosquitto
of its own: ``bench/rig.py``) holding a realistic table: ``--incidents`` (10,000) incidents in the
operator's region over the last 30 days, mixed statuses, and as many in another region. The load
generator is ``wrk`` (Debian package ``wrk``) with fixed threads, connections and duration:

* ``GET /api/incidents`` as an operator of the region (Bearer token): the default page (50 newest
  of the caller's regions, with the total).
* ``POST /panic/api/vehicle/ping`` from ``--vehicles`` (32) registered vehicles, each wrk thread
  with vehicles of its own, each ping a new position with a ``ts`` one microsecond after that
  vehicle's previous one (so every ping is the vehicle's newest: stored, latest position updated
  and broadcast, the whole path). The per-vehicle rate limit (30 a minute, bursts of 10) would
  otherwise be what is measured: the run raises it through ``NABOOM_VEHICLE_PINGS_PER_MINUTE``
  and ``NABOOM_VEHICLE_PING_BURST`` (the bucket is still taken from Redis on every ping).

Three ceilings, same run, same wrk settings, same uvicorn options, on the same machine, each
while naboom is stopped:

* ``bench/ceilings/bare_asgi.py``, a bare ASGI app answering a constant: what the server itself
  costs. Each row's ``ratio`` (also ``ratio_vs_bare_asgi``) is naboom's requests/s over this
  app's; the targets are on it: incidents at least 0.25, ping at least 0.5.
* ``bench/ceilings/bare_same_work.py``, a bare ASGI app (no framework, no ORM: asyncpg and
  msgspec) doing the same work per request on the same database: the same token check and
  session row, the same count and page (its body must equal naboom's, or the run fails); for
  the ping the same vehicle lookup, INSERT and conditional UPDATE (not the two Redis round trips,
  which are charged to naboom). ``ratio_vs_same_work`` (with ``ceiling_same_work``) is what
  the framework, the ORM and naboom's own code cost on top of the work; reported, not judged.
* ``bench/ceilings/bare_litestar.py``, an empty Litestar app on the two routes (no middleware,
  no auth, no database; the ping's JSON body parsed into a dict, answered 202): the framework's
  own floor. ``ratio_vs_litestar`` (with ``ceiling_litestar``) is what naboom's auth, validation,
  database work and code cost on top of an empty Litestar handler, and ``litestar_vs_bare_asgi``
  how much of the target the framework alone takes; reported, not judged.

Zero lost and zero doubled: every ping answered 202 is in the trail (``lost`` counts those that
are not), no ping is stored twice (``doubled``: duplicate ``(vehicle, ts)`` rows); pings sent but
cut off when wrk stopped may be stored unanswered (``unanswered_stored``, at most one per
connection). Any non-2xx answer fails the run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from rig import HOST, Rig, bench_parser, free_port, log, port_open, run_bench, stop_process, wait_until

CEILING = Path(__file__).resolve().parent / "ceilings" / "bare_asgi.py"
SAME_WORK = Path(__file__).resolve().parent / "ceilings" / "bare_same_work.py"
LITESTAR = Path(__file__).resolve().parent / "ceilings" / "bare_litestar.py"

# wrk's Lua: ``done`` prints the figures as one JSON line (wrk's own summary goes before it).
_DONE_LUA = r"""
done = function(summary, latency, requests)
  io.write(string.format(
    '\nWRK_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""

# Each wrk thread takes every n-th token (n = threads), so a vehicle's ts only ever grows.
_PING_LUA = r"""
local tokens = {TOKENS}
local threads = {THREADS}
local counter = 0
local next_id = 0
local t0 = os.time()
setup = function(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end
init = function(args)
  mine = {}
  for i = 1, #tokens do
    if (i - 1) % threads == thread_id then mine[#mine + 1] = tokens[i] end
  end
end
request = function()
  counter = counter + 1
  local token = mine[(counter % #mine) + 1]
  local step = math.floor(counter / #mine)
  local ts = os.date("!%Y-%m-%dT%H:%M:%S", t0 + math.floor(step / 1000000)) .. string.format(".%06dZ", step % 1000000)
  local body = string.format('{"lat":-24.5%04d,"lng":28.7%04d,"ts":"%s","speed":12.5,"heading":90}',
    counter % 10000, (counter * 7) % 10000, ts)
  return wrk.format("POST", "/panic/api/vehicle/ping",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
"""

_AUTH_LUA = r"""
request = function()
  return wrk.format("GET", nil, {["Authorization"] = "Bearer {TOKEN}"})
end
"""


def wrk(args: argparse.Namespace, url: str, script: str, work: Path, label: str) -> dict[str, Any]:
    """Run wrk with the fixed settings and ``script`` (plus the JSON ``done``); returns its figures."""
    path = work / f"{label}.lua"
    path.write_text(script + _DONE_LUA)
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--latency",
        "-s",
        str(path),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({label}): {out.stderr or out.stdout}")
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures ({label}): {out.stdout}")
    raw = json.loads(line[9:])
    errors = raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"]
    result = {
        "requests": raw["requests"],
        "per_s": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "latency_ms": {"p50": round(raw["p50_us"] / 1000, 2), "p99": round(raw["p99_us"] / 1000, 2),
                       "max": round(raw["max_us"] / 1000, 2)},
        "non2xx": raw["non2xx"],
        "socket_errors": errors,
    }  # fmt: skip
    log(
        f"{label}: {result['per_s']:.0f} req/s, p99 {result['latency_ms']['p99']} ms, non-2xx {raw['non2xx']}"
    )
    if raw["non2xx"] or errors:
        raise RuntimeError(f"{label}: {raw['non2xx']} non-2xx answers and {errors} socket errors")
    return result


def ping_script(tokens: list[str], threads: int) -> str:
    """The ping Lua for these vehicle tokens, split between ``threads`` wrk threads."""
    if len(tokens) < threads:
        raise ValueError("every wrk thread needs a vehicle of its own")
    listed = "{" + ",".join(f'"{t}"' for t in tokens) + "}"
    return _PING_LUA.replace("{TOKENS}", listed).replace("{THREADS}", str(threads))


def seed_incidents(rig: Rig, count: int) -> None:
    """``count`` incidents in the run's region and as many in another, over the last 30 days."""
    assert rig.db is not None
    statuses = "(ARRAY['open','acknowledged','dispatched','resolved','cancelled'])[1 + (g % 5)]"
    for region in (rig.region, f"{rig.region}-X"):
        rig.db.sql(
            "INSERT INTO incident (id, region, source, device_pid, message, lat, lng, accuracy, device_ts, "
            "received_at, status, sos_count, location_precision, created_at, updated_at) "
            f"SELECT gen_random_uuid(), '{region}', 'mqtt', 'bench-dev-' || (g % 200), 'SOS ' || g, "
            "-24.5 + (g % 100) / 1000.0, 28.7 + (g % 77) / 1000.0, 10, "
            "now() - (g * interval '30 days' / " + str(count) + "), "
            "now() - (g * interval '30 days' / " + str(count) + "), "
            f"{statuses}, 1, 'exact', now(), now() FROM generate_series(1, {count}) AS g"
        )
    # As autovacuum leaves a table after inserts (PostgreSQL 13+): statistics and the visibility
    # map, without which the count's index-only scan reads every heap page it covers.
    rig.db.sql("VACUUM (ANALYZE) incident")


def measure_naboom(rig: Rig, args: argparse.Namespace, ctx: dict[str, Any]) -> dict[str, Any]:
    """The two endpoints on ``naboom serve``, then the trail checked ping by ping.

    ``ctx`` receives what the same-work ceiling needs: the environment, the operator's token,
    the vehicles' tokens and naboom's default page.
    """
    rig.mosquitto()
    db = rig.database()
    env = rig.env(
        # A vehicle pings every few seconds; here 32 vehicles ping thousands of times a second.
        NABOOM_VEHICLE_PINGS_PER_MINUTE="100000000",
        NABOOM_VEHICLE_PING_BURST="100000000",
    )
    rig.cli(env, "migrate")
    operator = rig.user(env, "operator", rig.region)
    admin = rig.user(env, "admin")
    seed_incidents(rig, args.incidents)
    serve = rig.serve(env)
    base = serve.base_url
    assert base is not None
    op_token, admin_token = rig.login(base, *operator), rig.login(base, *admin)
    tokens = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin_token}"}) as client:
        for n in range(args.vehicles):
            r = client.post("/api/vehicles/", json={"callsign": f"Bench-{n}", "region": rig.region})
            r.raise_for_status()
            tokens.append(r.json()["token"])
        first = client.get("/api/incidents/", headers={"Authorization": f"Bearer {op_token}"}).json()
    if first["total"] != args.incidents or len(first["items"]) != 50:
        raise RuntimeError(
            f"the operator's default page: total {first['total']}, {len(first['items'])} items"
        )
    log(f"{args.incidents} incidents in {rig.region} (and as many elsewhere), {args.vehicles} vehicles")
    ctx.update(env=env, op_token=op_token, tokens=tokens, first=first)

    incidents = wrk(
        args, f"{base}/api/incidents", _AUTH_LUA.replace("{TOKEN}", op_token), rig.work, "naboom-incidents"
    )
    ping = wrk(
        args, f"{base}/panic/api/vehicle/ping", ping_script(tokens, args.threads), rig.work, "naboom-ping"
    )
    serve.stop()
    stored = int(db.sql("SELECT count(*) FROM vehicle_ping"))
    distinct = int(db.sql("SELECT count(DISTINCT (vehicle_id, ts)) FROM vehicle_ping"))
    return {
        "incidents": incidents,
        "ping": ping,
        "lost": max(0, ping["requests"] - stored),
        "doubled": stored - distinct,
        "unanswered_stored": max(0, stored - ping["requests"]),
        "pings_stored": stored,
    }


def measure_ceiling(
    rig: Rig,
    args: argparse.Namespace,
    script: Path = CEILING,
    what: str = "the bare ASGI app",
    label: str = "bare",
) -> dict[str, Any]:
    """The same two loads against a constant-answering ceiling (by default the bare ASGI app)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(script), "--port", str(port)])
    try:
        wait_until(lambda: port_open(port) or proc.poll() is not None, 30, what)
        base = f"http://{HOST}:{port}"
        get = wrk(args, f"{base}/api/incidents", _AUTH_LUA.replace("{TOKEN}", "x"), rig.work, f"{label}-get")
        post = wrk(args, f"{base}/panic/api/vehicle/ping", ping_script(["bare"] * args.vehicles, args.threads), rig.work, f"{label}-post")  # fmt: skip
    finally:
        stop_process(proc)
    return {"get": get, "post": post}


def measure_same_work(rig: Rig, args: argparse.Namespace, ctx: dict[str, Any]) -> dict[str, Any]:
    """The same two loads against the bare app that does the same database work (naboom stopped)."""
    port = free_port()
    env = {k: v for k, v in ctx["env"].items() if k in ("PATH", "NABOOM_DATABASE_URL", "NABOOM_SECRET_KEY")}
    proc = subprocess.Popen([sys.executable, str(SAME_WORK), "--port", str(port)], env=env)
    try:
        wait_until(lambda: port_open(port) or proc.poll() is not None, 30, "the same-work ASGI app")
        base = f"http://{HOST}:{port}"
        page = httpx.get(f"{base}/api/incidents", headers={"Authorization": f"Bearer {ctx['op_token']}"})
        if page.status_code != 200 or page.json() != ctx["first"]:
            raise RuntimeError(f"the same-work app's page differs from naboom's: {page.status_code} {page.text[:300]}")
        auth = _AUTH_LUA.replace("{TOKEN}", ctx["op_token"])
        get = wrk(args, f"{base}/api/incidents", auth, rig.work, "same-work-get")
        post = wrk(args, f"{base}/panic/api/vehicle/ping", ping_script(ctx["tokens"], args.threads), rig.work, "same-work-post")  # fmt: skip
    finally:
        stop_process(proc)
    return {"get": get, "post": post}


def body(args: argparse.Namespace) -> Any:
    def run(rig: Rig) -> dict[str, Any]:
        ctx: dict[str, Any] = {}
        naboom = measure_naboom(rig, args, ctx)
        bare = measure_ceiling(rig, args)
        lite = measure_ceiling(rig, args, LITESTAR, "the empty Litestar app", "litestar")
        same = measure_same_work(rig, args, ctx)
        rows = []
        for label, mine, ref, work, empty, floor in (
            ("GET /api/incidents", naboom["incidents"], bare["get"], same["get"], lite["get"], 0.25),
            ("POST /panic/api/vehicle/ping", naboom["ping"], bare["post"], same["post"], lite["post"], 0.5),
        ):
            rows.append({
                "label": label,
                "measured": {"what": f"{label} req/s", "value": mine["per_s"], "unit": "req/s"},
                "ceiling": {"what": "bare ASGI app req/s", "value": ref["per_s"], "unit": "req/s"},
                "ratio": round(mine["per_s"] / ref["per_s"], 3),
                "target": {"text": f"≥ {floor} × bare ASGI", "ratio_min": floor},  # noqa: RUF001
                "ratio_vs_bare_asgi": round(mine["per_s"] / ref["per_s"], 3),
                "ceiling_same_work": {"what": "bare ASGI app, same DB work (asyncpg + msgspec) req/s",
                                      "value": work["per_s"], "unit": "req/s"},
                "ratio_vs_same_work": round(mine["per_s"] / work["per_s"], 3),
                "ceiling_litestar": {"what": "empty Litestar app (no middleware, no DB) req/s",
                                     "value": empty["per_s"], "unit": "req/s"},
                "ratio_vs_litestar": round(mine["per_s"] / empty["per_s"], 3),
                "litestar_vs_bare_asgi": round(empty["per_s"] / ref["per_s"], 3),
                "latency_ms": mine["latency_ms"],
            })  # fmt: skip
        return {
            "quick": args.quick,
            "lost": naboom.pop("lost"),
            "doubled": naboom.pop("doubled"),
            "table": rows,
            "naboom": naboom,
            "bare": bare,
            "same_work": same,
            "litestar": lite,
            "wrk": {"threads": args.threads, "connections": args.connections, "duration_s": args.duration},
            "incidents_in_region": args.incidents,
            "vehicles": args.vehicles,
            "env_raised": ["NABOOM_VEHICLE_PINGS_PER_MINUTE", "NABOOM_VEHICLE_PING_BURST"],
        }

    return run


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds of wrk per endpoint and server (default 10)"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument(
        "--incidents", type=int, default=10_000, help="incidents in the region (default 10,000)"
    )
    parser.add_argument("--vehicles", type=int, default=32, help="pinging vehicles (default 32)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.incidents = 2, min(args.incidents, 2000)
    sys.exit(run_bench("api", args, body(args)))


if __name__ == "__main__":
    main()
