"""Incident queries against ``naboom serve`` on real PostgreSQL: filters, sort, pages, detail, CSV export."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from naboom.incidents.service import EXPORT_COLUMNS
from tests.integration.incident_helpers import (
    act,
    add_vehicle,
    assert_problem,
    call,
    detail,
    new_incident,
    ok,
    serve,
)
from tests.support import Server, Stack, psql, sos, unique_pid, unique_region


@pytest.fixture(scope="module")
def server(real_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(real_stack, tmp_path_factory.mktemp("queries"))


@pytest.fixture(scope="module")
def stack(server: Server) -> Stack:
    return server.stack


@pytest.fixture(scope="module")
def admin(stack: Stack) -> str:
    return stack.admin()


def _incidents(stack: Stack, region: str, count: int, **fields: Any) -> list[str]:
    """``count`` incidents of ``region``, each from its own device (oldest first)."""
    return [new_incident(stack, region, **fields)[2] for _ in range(count)]


def _set(stack: Stack, incident_id: str, assignments: str) -> None:
    assert stack.database_url is not None
    psql(stack.database_url, f"UPDATE incident SET {assignments} WHERE id = '{incident_id}'")


def _ids(stack: Stack, token: str, **params: Any) -> list[str]:
    return [i["id"] for i in ok(call(stack, token, "GET", "/api/incidents", limit=500, **params))["items"]]


def test_status_filter_takes_several_statuses_and_refuses_unknown_ones(stack: Stack) -> None:
    region = unique_region()
    token = stack.operator(region)
    opened, acknowledged, resolved, cancelled = _incidents(stack, region, 4)
    ok(act(stack, token, acknowledged, "acknowledge"))
    ok(act(stack, token, resolved, "acknowledge"))
    ok(act(stack, token, resolved, "resolve"))
    ok(act(stack, token, cancelled, "cancel"))

    assert set(_ids(stack, token, region=region, status=["open", "acknowledged"])) == {opened, acknowledged}
    assert _ids(stack, token, region=region, status="resolved") == [resolved]
    assert set(_ids(stack, token, region=region)) == {opened, acknowledged, resolved, cancelled}
    assert_problem(call(stack, token, "GET", "/api/incidents", status="closed"), 400)


def test_region_filter_narrows_to_one_region_and_never_widens_an_operators_scope(stack: Stack, admin: str) -> None:
    a, b, c = unique_region(), unique_region(), unique_region()
    in_a, in_b, in_c = _incidents(stack, a, 1)[0], _incidents(stack, b, 1)[0], _incidents(stack, c, 1)[0]
    both = stack.operator(a, b)

    assert set(_ids(stack, both, region=a)) == {in_a}
    assert in_c not in _ids(stack, both) and {in_a, in_b} <= set(_ids(stack, both))
    assert _ids(stack, both, region=c) == []
    assert _ids(stack, admin, region=c) == [in_c]
    assert_problem(call(stack, admin, "GET", "/api/incidents", region="ZA\x00"), 400)


def test_since_and_until_bound_received_at_and_a_time_without_offset_is_utc(stack: Stack) -> None:
    region = unique_region()
    token = stack.operator(region)
    january, february, march = _incidents(stack, region, 3)
    _set(stack, january, "received_at = '2024-01-10T12:00:00Z'")
    _set(stack, february, "received_at = '2024-02-10T12:00:00Z'")
    _set(stack, march, "received_at = '2024-03-01T00:00:00Z'")

    assert _ids(stack, token, region=region, since="2024-01-15T00:00:00Z", until="2024-03-01T00:00:00Z") == [february]
    assert _ids(stack, token, region=region, since="2024-03-01T00:00:00") == [march]
    assert _ids(stack, token, region=region, until="2024-01-10T12:00:00.000001+00:00") == [january]
    assert _ids(stack, token, region=region, since="2024-02-10T14:00:00+02:00", until="2024-02-10T14:00:01+02:00") == [february]
    problem = assert_problem(call(stack, token, "GET", "/api/incidents", since="2024-03-01T00:00:00Z",
                                  until="2024-01-01T00:00:00Z"), 400)
    assert "before until" in problem["detail"]
    assert_problem(call(stack, token, "GET", "/api/incidents", since="last tuesday"), 400)
    assert_problem(call(stack, token, "GET", "/api/incidents", since="0001-01-01T00:00:00+01:00"), 400)


def test_device_filter_lists_the_incidents_of_one_device(stack: Stack) -> None:
    region = unique_region()
    token = stack.operator(region)
    _, device, first = new_incident(stack, region)
    _incidents(stack, region, 2)
    ok(act(stack, token, first, "cancel"))
    second = stack.submit(sos(device)).json()["incident_id"]

    assert _ids(stack, token, device=device["pid"]) == [second, first]
    assert _ids(stack, token, device=unique_pid()) == []


def test_bounding_box_keeps_the_incidents_inside_and_refuses_partial_inverted_or_impossible_boxes(stack: Stack) -> None:
    region = unique_region()
    token = stack.operator(region)
    polokwane = new_incident(stack, region, lat=-23.90, lng=29.45)[2]
    naboomspruit = new_incident(stack, region, lat=-24.52, lng=28.71)[2]
    cape_town = new_incident(stack, region, lat=-33.92, lng=18.42)[2]
    fiji_east = new_incident(stack, region, lat=-17.0, lng=179.5)[2]
    fiji_west = new_incident(stack, region, lat=-17.0, lng=-179.5)[2]
    box = {"min_lat": -25.0, "min_lng": 28.0, "max_lat": -23.0, "max_lng": 30.0}

    assert set(_ids(stack, token, region=region, **box)) == {polokwane, naboomspruit}
    assert _ids(stack, token, region=region, min_lat=-34, min_lng=18, max_lat=-33, max_lng=19) == [cape_town]
    # A box whose west edge is east of its east edge crosses the antimeridian.
    assert set(_ids(stack, token, region=region, min_lat=-18, min_lng=179, max_lat=-16, max_lng=-179)) == {fiji_east, fiji_west}

    for params in (
        {"min_lat": -25.0, "max_lat": -23.0},
        {**box, "min_lat": -22.0},
        {**box, "max_lat": 91},
        {**box, "min_lng": -181},
        {**box, "max_lng": "east"},
    ):
        assert_problem(call(stack, token, "GET", "/api/incidents", **params), 400)


def test_pages_neither_overlap_nor_skip_when_incidents_share_received_at(stack: Stack) -> None:
    region = unique_region()
    token = stack.operator(region)
    made = _incidents(stack, region, 7)
    for incident_id in made:
        _set(stack, incident_id, "received_at = '2025-05-05T05:05:05Z'")

    for sort in ("-received_at", "received_at", "status"):
        whole = _ids(stack, token, region=region, sort=sort)
        pages = [
            ok(call(stack, token, "GET", "/api/incidents", region=region, sort=sort, limit=3, offset=offset))
            for offset in (0, 3, 6)
        ]
        assert [p["total"] for p in pages] == [7, 7, 7] and [p["limit"] for p in pages] == [3, 3, 3]
        assert [p["offset"] for p in pages] == [0, 3, 6]
        paged = [i["id"] for p in pages for i in p["items"]]
        assert paged == whole and sorted(paged) == sorted(made), sort
    # Equal times: the id decides, the same way every time.
    assert _ids(stack, token, region=region) == sorted(made, reverse=True)
    assert _ids(stack, token, region=region, sort="received_at") == sorted(made)


def test_sort_newest_first_by_default_oldest_first_or_by_lifecycle_status(stack: Stack) -> None:
    region = unique_region()
    token = stack.operator(region)
    first, second, third, fourth = _incidents(stack, region, 4)
    for n, incident_id in enumerate((first, second, third, fourth)):
        _set(stack, incident_id, f"received_at = '2025-01-0{n + 1}T08:00:00Z'")
    ok(act(stack, token, first, "acknowledge"))
    ok(act(stack, token, second, "cancel"))
    ok(act(stack, token, third, "acknowledge"))
    ok(act(stack, token, third, "resolve"))

    assert _ids(stack, token, region=region) == [fourth, third, second, first]
    assert _ids(stack, token, region=region, sort="received_at") == [first, second, third, fourth]
    # open, acknowledged, dispatched, resolved, cancelled
    assert _ids(stack, token, region=region, sort="status") == [fourth, first, third, second]
    assert_problem(call(stack, token, "GET", "/api/incidents", sort="severity"), 400)


def test_detail_has_the_timeline_acknowledgement_and_nearest_available_vehicles_with_distance(stack: Stack) -> None:
    region = unique_region()
    token = stack.operator(region)
    _, device, incident_id = new_incident(stack, region, lat=-24.53, lng=28.71)
    near = add_vehicle(stack, region, lat=-24.54, lng=28.71)
    far = add_vehicle(stack, region, lat=-24.60, lng=28.71)
    add_vehicle(stack, region, lat=-24.531, lng=28.71, available=False)
    add_vehicle(stack, region, lat=-24.531, lng=28.71, active=False)
    add_vehicle(stack, region)  # never pinged: no position
    add_vehicle(stack, new_incident(stack)[0], lat=-24.53, lng=28.71)  # another region's
    ok(act(stack, token, incident_id, "acknowledge", {"note": "on it"}))

    shown = detail(stack, token, incident_id)

    assert [(v["id"], v["callsign"]) for v in shown["nearest_vehicles"]] == [
        (near["id"], near["callsign"]), (far["id"], far["callsign"]),
    ]
    assert shown["nearest_vehicles"][0]["distance_m"] == pytest.approx(1112, rel=0.01)
    assert shown["nearest_vehicles"][1]["distance_m"] == pytest.approx(7784, rel=0.01)
    assert shown["acknowledged_by"] and shown["ack_seconds"] is not None and shown["acknowledged_at"]
    assert [(e["type"], e["actor"]) for e in shown["timeline"]] == [
        ("sos", f"device:{device['pid']}"), ("acknowledged", shown["acknowledged_by"]),
    ]
    assert shown["timeline"][1]["payload"]["note"] == "on it"
    # Closed incidents need no vehicle.
    ok(act(stack, token, incident_id, "resolve"))
    assert detail(stack, token, incident_id)["nearest_vehicles"] == []


# CSV export -------------------------------------------------------------------------------------


def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_export_gives_an_admin_a_header_and_the_rows_received_in_the_range_oldest_first(
    stack: Stack, admin: str
) -> None:
    region = unique_region()
    token = stack.operator(region)
    before, inside, formula, after = _incidents(stack, region, 4)
    _set(stack, before, "received_at = '2023-12-31T23:59:59Z'")
    _set(stack, inside, "received_at = '2024-01-01T00:00:00Z'")
    _set(stack, formula, "received_at = '2024-06-30T10:00:00Z', message = '=HYPERLINK(\"http://evil\")'")
    _set(stack, after, "received_at = '2024-07-01T00:00:00Z'")
    ok(act(stack, token, inside, "acknowledge"))

    r = call(stack, admin, "GET", "/api/incidents/export.csv", since="2024-01-01T00:00:00Z",
             until="2024-07-01T00:00:00Z", region=region)

    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = _csv(r.text)
    assert tuple(rows[0]) == EXPORT_COLUMNS
    records = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert [rec["id"] for rec in records] == [inside, formula]
    assert records[0]["status"] == "acknowledged" and records[0]["acknowledged_by"]
    assert records[0]["region"] == region and records[0]["received_at"].startswith("2024-01-01T00:00:00")
    assert records[1]["msg"] == "'=HYPERLINK(\"http://evil\")", "a formula is exported as text"
    audit = ok(call(stack, admin, "GET", "/api/audit", action="incident.export", limit=500))["items"]
    assert any(e["detail"].get("region") == region for e in audit)


def test_csv_export_streams_every_row_of_a_large_range(stack: Stack, admin: str) -> None:
    region = unique_region()
    assert stack.database_url is not None
    psql(
        stack.database_url,
        "INSERT INTO incident (id, region, source, device_pid, message, device_ts, received_at, status, sos_count, "
        "created_at, updated_at) SELECT gen_random_uuid(), "
        f"'{region}', 'mqtt', 'bulk', 'SOS ' || n, now(), '2022-03-01T00:00:00Z'::timestamptz + n * interval '1 second', "
        "'open', 1, now(), now() FROM generate_series(1, 2500) AS n",
    )

    r = call(stack, admin, "GET", "/api/incidents/export.csv", since="2022-03-01", until="2022-03-02", region=region)

    assert r.status_code == 200, r.text
    rows = _csv(r.text)
    assert len(rows) == 2501 and [row[5] for row in rows[1:3]] == ["SOS 1", "SOS 2"] and rows[-1][5] == "SOS 2500"


def test_csv_export_is_for_admins_only(stack: Stack) -> None:
    region = unique_region()
    name = f"viewer-{uuid.uuid4().hex[:8]}"
    stack.create_user(name, "viewer", region)
    range_ = {"since": "2024-01-01T00:00:00Z", "until": "2024-02-01T00:00:00Z"}
    for token in (stack.operator(region), stack.login(name)):
        assert_problem(call(stack, token, "GET", "/api/incidents/export.csv", **range_), 403)


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({}, "both since and until"),
        ({"since": "2024-01-01T00:00:00Z"}, "both since and until"),
        ({"until": "2024-01-01T00:00:00Z"}, "both since and until"),
        ({"since": "2024-01-01T00:00:00Z", "until": "2025-01-02T00:00:01Z"}, "at most 366 days"),
        ({"since": "2024-02-01T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, "before until"),
    ],
    ids=["no-range", "no-until", "no-since", "longer-than-366-days", "inverted"],
)
def test_csv_export_refuses_a_range_without_both_ends_or_longer_than_366_days(
    stack: Stack, admin: str, params: dict[str, str], says: str
) -> None:
    problem = assert_problem(call(stack, admin, "GET", "/api/incidents/export.csv", **params), 400)
    assert says in problem["detail"]
