"""Every route x {anonymous, viewer, operator of the region, operator of another region, admin}.

``EXPECTED`` is the table of intended answers, keyed by (method, path template) as the app
registers them. A route without an entry, or an entry without a route, fails
:func:`test_every_route_has_an_entry_and_every_entry_a_route`, so nobody adds a route without
deciding who may call it. Each cell's request is built so that only authorisation can refuse it:
the ids exist (an incident of region A from a signed SOS, a device, a vehicle, a user), bodies
are valid, and a state-changing call gets its own fresh object.

The rules (issue 3): operators act on their regions; viewers read the same but every action is
403; an operator of another region gets 404 for the region's things; admins do everything;
admin-only routes are 403 for everyone else; anonymous callers get 401 except on public paths.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar.routes import HTTPRoute, WebSocketRoute

from naboom.app import create_app
from naboom.settings import Settings
from tests.integration.api_helpers import PASSWORD, Api
from tests.integration.live import ws_handshake
from tests.support import Server, Stack, psql, sos, unique_pid

PRINCIPALS = ("anonymous", "viewer", "operator", "outsider", "admin")
Row = tuple[int, int, int, int, int]

PUBLIC: Row = (200, 200, 200, 200, 200)
SIGNED_IN: Row = (401, 200, 200, 200, 200)
REGION_READ: Row = (401, 200, 200, 404, 200)


def admin_only(ok: int = 200) -> Row:
    return (401, 403, 403, 403, ok)


def region_action(ok: int = 200) -> Row:
    return (401, 403, ok, 404, ok)


# (method, path template) → status for (anonymous, viewer of A, operator of A, operator of B, admin).
# WebSocket handshakes: 101 when accepted, else the HTTP status the server refuses the upgrade with.
EXPECTED: dict[tuple[str, str], Row] = {
    # sessions
    ("POST", "/api/auth/login"): PUBLIC,
    ("POST", "/api/auth/logout"): SIGNED_IN,
    ("GET", "/api/auth/me"): SIGNED_IN,
    # audit, users, regions
    ("GET", "/api/audit"): admin_only(),
    ("GET", "/api/users"): admin_only(),
    ("POST", "/api/users"): admin_only(201),
    ("GET", "/api/users/{user_id}"): admin_only(),
    ("PATCH", "/api/users/{user_id}"): admin_only(),
    ("POST", "/api/users/{user_id}/password"): admin_only(),
    ("GET", "/api/regions"): SIGNED_IN,
    ("POST", "/api/regions"): admin_only(201),
    ("PATCH", "/api/regions/{code}"): admin_only(),
    ("GET", "/api/regions/{code}/coverage"): REGION_READ,
    ("GET", "/api/regions/{code}/coverage/days"): REGION_READ,
    ("POST", "/api/regions/{code}/coverage/{day}/compute"): admin_only(),
    # devices and keys
    ("GET", "/api/devices"): admin_only(),
    ("POST", "/api/devices"): admin_only(201),
    ("GET", "/api/devices/{pid}"): admin_only(),
    ("GET", "/api/devices/{pid}/rejections"): admin_only(),
    ("POST", "/api/devices/{pid}/rotate"): admin_only(201),
    ("POST", "/api/devices/{pid}/keys/{kid}/revoke"): admin_only(),
    ("POST", "/api/devices/{pid}/deactivate"): admin_only(),
    ("POST", "/api/devices/{pid}/activate"): admin_only(),
    # ingest
    ("POST", "/panic/api/submit"): (201, 201, 201, 201, 201),
    ("GET", "/api/ingest/stats"): admin_only(),
    ("GET", "/api/ingest/rejections"): admin_only(),
    # incidents
    ("GET", "/api/incidents"): SIGNED_IN,
    ("GET", "/api/incidents/{incident_id}"): REGION_READ,
    ("GET", "/api/incidents/export.csv"): admin_only(),
    ("POST", "/api/incidents/{incident_id}/acknowledge"): region_action(),
    ("POST", "/api/incidents/{incident_id}/dispatch"): region_action(),
    ("POST", "/api/incidents/{incident_id}/resolve"): region_action(),
    ("POST", "/api/incidents/{incident_id}/cancel"): region_action(),
    ("POST", "/api/incidents/{incident_id}/notes"): region_action(201),
    # patrol vehicles
    ("GET", "/api/vehicles"): SIGNED_IN,
    ("POST", "/api/vehicles"): admin_only(201),
    ("GET", "/api/vehicles/{vehicle_id}"): REGION_READ,
    ("GET", "/api/vehicles/{vehicle_id}/trail"): REGION_READ,
    ("POST", "/api/vehicles/{vehicle_id}/token"): admin_only(201),
    ("POST", "/api/vehicles/{vehicle_id}/deactivate"): admin_only(),
    ("POST", "/api/vehicles/{vehicle_id}/activate"): admin_only(),
    # Vehicles authenticate with their own token: no user session is one (see the vehicle cell below).
    ("POST", "/panic/api/vehicle/ping"): (401, 401, 401, 401, 401),
    # escalation rules
    ("GET", "/api/escalation-rules"): admin_only(),
    ("POST", "/api/escalation-rules"): admin_only(201),
    ("GET", "/api/escalation-rules/{rule_id}"): admin_only(),
    ("PATCH", "/api/escalation-rules/{rule_id}"): admin_only(),
    ("DELETE", "/api/escalation-rules/{rule_id}"): admin_only(204),
    # webhooks
    ("GET", "/api/webhooks"): admin_only(),
    ("POST", "/api/webhooks"): admin_only(201),
    ("GET", "/api/webhooks/{webhook_id}"): admin_only(),
    ("PATCH", "/api/webhooks/{webhook_id}"): admin_only(),
    ("DELETE", "/api/webhooks/{webhook_id}"): admin_only(204),
    # SMS: responder contacts (admins), the outbound log (each caller's regions), providers (admins)
    ("GET", "/api/regions/{code}/contacts"): admin_only(),
    ("POST", "/api/regions/{code}/contacts"): admin_only(201),
    ("PATCH", "/api/regions/{code}/contacts/{contact_id}"): admin_only(),
    ("DELETE", "/api/regions/{code}/contacts/{contact_id}"): admin_only(204),
    ("GET", "/api/sms/messages"): SIGNED_IN,
    ("GET", "/api/sms/messages/{message_id}"): REGION_READ,
    ("GET", "/api/sms/providers"): admin_only(),
    # The gateway authenticates with the callback secret, not a session; none is configured here.
    ("POST", "/api/sms/callback"): (503, 503, 503, 503, 503),
    # live feeds
    ("GET", "/panic/api/stream"): REGION_READ,
    ("WS", "/ws/alerts/{region}"): (403, 101, 101, 403, 101),
    # operations and the OpenAPI document
    ("GET", "/api/system/background"): admin_only(),
    ("GET", "/api/system/retention"): admin_only(),
    ("GET", "/monitoring/health"): PUBLIC,
    # open for a scraper on the internal network unless NABOOM_METRICS_TOKEN is set (not set here)
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/schema"): PUBLIC,
    ("GET", "/schema/openapi.json"): PUBLIC,
    ("GET", "/schema/openapi.yaml"): PUBLIC,
    ("GET", "/schema/openapi.yml"): PUBLIC,
    ("GET", "/schema/swagger"): PUBLIC,
    ("GET", "/schema/redoc"): PUBLIC,
    ("GET", "/schema/rapidoc"): PUBLIC,
    ("GET", "/schema/elements"): PUBLIC,
    ("GET", "/schema/oauth2-redirect.html"): PUBLIC,
    ("GET", "/schema/{path}"): (404, 404, 404, 404, 404),
    # The control-room monitor's static files are public, the data it shows is not (the front page
    # redirects to it). Asked for here: the address without its slash, and an asset no build has.
    ("GET", "/"): (302, 302, 302, 302, 302),
    ("GET", "/monitor"): (301, 301, 301, 301, 301),
    ("GET", "/monitor/{path}"): (404, 404, 404, 404, 404),
}


def app_routes(stack: Stack) -> set[tuple[str, str]]:
    """(method, path template) of every route the app registers; OPTIONS is CORS preflight, for all."""
    app = create_app(Settings.from_env(stack.env()), run_ingest=False)
    routes: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            routes.update((method, route.path_format) for method in route.methods - {"OPTIONS", "HEAD"})
        elif isinstance(route, WebSocketRoute):
            routes.add(("WS", route.path_format))
    return routes


@dataclass
class Principal:
    name: str
    username: str | None
    token: str | None

    def fresh_token(self, stack: Stack) -> str | None:
        """A new session (for calls that end the one they use)."""
        return stack.login(self.username) if self.username else None


@dataclass
class World:
    """Region A (the principals' region) and B, the five principals, and factories of fresh objects."""

    stack: Stack
    admin: Api
    region: str
    other_region: str
    principals: dict[str, Principal] = field(default_factory=dict)

    def user(self, role: str = "viewer") -> dict[str, Any]:
        return self.admin.new_user(role, self.region)

    def device(self) -> dict[str, Any]:
        body = {"pid": unique_pid("mx"), "region": self.region}
        return dict(self.admin.ok("POST", "/api/devices", body, status=201))

    def incident(self, then: str | None = None) -> str:
        """A new incident of region A from a signed SOS of a new device (so it attaches to nothing)."""
        r = self.stack.submit(sos(self.device()))
        assert r.status_code == 201, r.text
        incident_id = str(r.json()["incident_id"])
        if then:
            self.admin.ok("POST", f"/api/incidents/{incident_id}/{then}", {})
        return incident_id

    def vehicle(self, then: str | None = None) -> dict[str, Any]:
        body = {"callsign": f"MX-{uuid.uuid4().hex[:8]}", "region": self.region}
        vehicle = dict(self.admin.ok("POST", "/api/vehicles", body, status=201))
        if then:
            self.admin.ok("POST", f"/api/vehicles/{vehicle['id']}/{then}")
        return vehicle


@dataclass
class Call:
    """How to exercise one route: its path parameters, query and body, made fresh per cell."""

    params: Callable[[World], dict[str, Any]] = lambda w: {}
    body: Callable[[World], Any] | None = None
    query: Callable[[World], dict[str, Any]] = lambda w: {}
    fresh_session: bool = False


def _since_until(_: World) -> dict[str, str]:
    now = datetime.now(UTC)
    return {"since": (now - timedelta(days=1)).isoformat(), "until": (now + timedelta(minutes=1)).isoformat()}


CALLS: dict[tuple[str, str], Call] = {
    ("POST", "/api/auth/login"): Call(body=lambda w: {"username": w.principals["viewer"].username, "password": PASSWORD}),
    ("POST", "/api/auth/logout"): Call(fresh_session=True),
    ("POST", "/api/users"): Call(
        body=lambda w: {"username": f"mx-{uuid.uuid4().hex[:8]}", "password": PASSWORD, "role": "viewer",
                        "regions": [w.region]}
    ),
    ("GET", "/api/users/{user_id}"): Call(params=lambda w: {"user_id": w.user()["id"]}),
    ("PATCH", "/api/users/{user_id}"): Call(params=lambda w: {"user_id": w.user()["id"]}, body=lambda w: {"role": "operator"}),
    ("POST", "/api/users/{user_id}/password"): Call(
        params=lambda w: {"user_id": w.user()["id"]}, body=lambda w: {"password": "another-pass-1"}
    ),
    ("POST", "/api/regions"): Call(body=lambda w: {"code": f"ZA-{uuid.uuid4().hex[:6]}", "name": "New"}),
    ("PATCH", "/api/regions/{code}"): Call(params=lambda w: {"code": w.region}, body=lambda w: {"name": "Region A"}),
    ("GET", "/api/regions/{code}/coverage"): Call(params=lambda w: _covered_region(w)),
    ("GET", "/api/regions/{code}/coverage/days"): Call(params=lambda w: {"code": w.region}),
    ("POST", "/api/regions/{code}/coverage/{day}/compute"): Call(params=lambda w: {"code": w.region, "day": _yesterday()}),
    ("POST", "/api/devices"): Call(body=lambda w: {"pid": unique_pid("mx"), "region": w.region}),
    ("GET", "/api/devices/{pid}"): Call(params=lambda w: {"pid": w.device()["pid"]}),
    ("GET", "/api/devices/{pid}/rejections"): Call(params=lambda w: {"pid": w.device()["pid"]}),
    ("POST", "/api/devices/{pid}/rotate"): Call(params=lambda w: {"pid": w.device()["pid"]}),
    ("POST", "/api/devices/{pid}/keys/{kid}/revoke"): Call(params=lambda w: {"pid": w.device()["pid"], "kid": 1}),
    ("POST", "/api/devices/{pid}/deactivate"): Call(params=lambda w: {"pid": w.device()["pid"]}),
    ("POST", "/api/devices/{pid}/activate"): Call(params=lambda w: _inactive_device(w)),
    ("POST", "/panic/api/submit"): Call(body=lambda w: sos(w.device())),
    ("GET", "/api/incidents/{incident_id}"): Call(params=lambda w: {"incident_id": w.incident()}),
    ("GET", "/api/incidents/export.csv"): Call(query=_since_until),
    ("POST", "/api/incidents/{incident_id}/acknowledge"): Call(params=lambda w: {"incident_id": w.incident()}, body=lambda w: {}),
    ("POST", "/api/incidents/{incident_id}/dispatch"): Call(
        params=lambda w: {"incident_id": w.incident()}, body=lambda w: {"vehicle_id": w.vehicle()["id"]}
    ),
    ("POST", "/api/incidents/{incident_id}/resolve"): Call(
        params=lambda w: {"incident_id": w.incident(then="acknowledge")}, body=lambda w: {}
    ),
    ("POST", "/api/incidents/{incident_id}/cancel"): Call(params=lambda w: {"incident_id": w.incident()}, body=lambda w: {}),
    ("POST", "/api/incidents/{incident_id}/notes"): Call(
        params=lambda w: {"incident_id": w.incident()}, body=lambda w: {"text": "Caller says all clear"}
    ),
    ("POST", "/api/vehicles"): Call(body=lambda w: {"callsign": f"MX-{uuid.uuid4().hex[:8]}", "region": w.region}),
    ("GET", "/api/vehicles/{vehicle_id}"): Call(params=lambda w: {"vehicle_id": w.vehicle()["id"]}),
    ("GET", "/api/vehicles/{vehicle_id}/trail"): Call(params=lambda w: {"vehicle_id": w.vehicle()["id"]}),
    ("POST", "/api/vehicles/{vehicle_id}/token"): Call(params=lambda w: {"vehicle_id": w.vehicle()["id"]}),
    ("POST", "/api/vehicles/{vehicle_id}/deactivate"): Call(params=lambda w: {"vehicle_id": w.vehicle()["id"]}),
    ("POST", "/api/vehicles/{vehicle_id}/activate"): Call(
        params=lambda w: {"vehicle_id": w.vehicle(then="deactivate")["id"]}
    ),
    ("POST", "/panic/api/vehicle/ping"): Call(
        body=lambda w: {"lat": -24.5, "lng": 28.7, "ts": datetime.now(UTC).isoformat()}
    ),
    ("POST", "/api/escalation-rules"): Call(body=lambda w: _escalation_rule_body(w)),
    ("GET", "/api/escalation-rules/{rule_id}"): Call(params=lambda w: _escalation_rule(w)),
    ("PATCH", "/api/escalation-rules/{rule_id}"): Call(
        params=lambda w: _escalation_rule(w), body=lambda w: {"active": False}
    ),
    ("DELETE", "/api/escalation-rules/{rule_id}"): Call(params=lambda w: _escalation_rule(w)),
    ("POST", "/api/webhooks"): Call(body=lambda w: _webhook_body(w)),
    ("GET", "/api/webhooks/{webhook_id}"): Call(params=lambda w: _webhook(w)),
    ("PATCH", "/api/webhooks/{webhook_id}"): Call(params=lambda w: _webhook(w), body=lambda w: {"active": False}),
    ("DELETE", "/api/webhooks/{webhook_id}"): Call(params=lambda w: _webhook(w)),
    ("GET", "/api/regions/{code}/contacts"): Call(params=lambda w: {"code": w.region}),
    ("POST", "/api/regions/{code}/contacts"): Call(
        params=lambda w: {"code": w.region}, body=lambda w: {"name": "Responder", "phone": _new_phone()}
    ),
    ("PATCH", "/api/regions/{code}/contacts/{contact_id}"): Call(params=lambda w: _contact(w), body=lambda w: {"active": False}),
    ("DELETE", "/api/regions/{code}/contacts/{contact_id}"): Call(params=lambda w: _contact(w)),
    ("GET", "/api/sms/messages/{message_id}"): Call(params=lambda w: _sms_message(w)),
    ("POST", "/api/sms/callback"): Call(body=lambda w: {"messageId": "mx", "statusCode": 4, "status": "RECEIVED_BY_RECIPIENT"}),
    ("GET", "/panic/api/stream"): Call(query=lambda w: {"region": w.region}),
    ("WS", "/ws/alerts/{region}"): Call(params=lambda w: {"region": w.region}),
    ("GET", "/schema/{path}"): Call(params=lambda w: {"path": "no-such-page.json"}),
    ("GET", "/monitor/{path}"): Call(params=lambda w: {"path": "assets/no-such-chunk.js"}),
}


def _yesterday() -> str:
    return (datetime.now(UTC) - timedelta(days=1)).date().isoformat()


def _covered_region(w: World) -> dict[str, Any]:
    """Region A with a coverage report, so reading it can succeed."""
    w.admin.ok("POST", f"/api/regions/{w.region}/coverage/{_yesterday()}/compute", status=200)
    return {"code": w.region}


def _new_phone() -> str:
    return f"+2783{uuid.uuid4().int % 10**7:07d}"


def _contact(w: World) -> dict[str, Any]:
    """A responder contact of region A."""
    contact = w.admin.ok("POST", f"/api/regions/{w.region}/contacts", {"name": "Responder", "phone": _new_phone()}, status=201)
    return {"code": w.region, "contact_id": contact["id"]}


def _sms_message(w: World) -> dict[str, Any]:
    """An outbound message about an incident of region A, stored straight in the database (no worker runs here)."""
    assert w.stack.database_url is not None
    incident_id, message_id = w.incident(), uuid.uuid4()
    psql(
        w.stack.database_url,
        "INSERT INTO outbound_message (id, key, incident_id, region, step, recipient, body, status, attempts, "
        f"created_at, updated_at) VALUES ('{message_id}', '{incident_id}:new:mx', '{incident_id}', '{w.region}', "
        "'new', '+27820000000', 'SOS', 'sent', 1, now(), now())",
    )
    return {"message_id": str(message_id)}


def _inactive_device(w: World) -> dict[str, Any]:
    pid = w.device()["pid"]
    w.admin.ok("POST", f"/api/devices/{pid}/deactivate")
    return {"pid": pid}


def _escalation_rule_body(w: World) -> dict[str, Any]:
    level = {"threshold_minutes": 5, "targets": ["+27820000001"], "template": "Incident {incident} waits"}
    # Inactive: it never fires for the matrix's incidents.
    return {"region": w.region, "name": f"mx-{uuid.uuid4().hex[:8]}", "levels": [level], "active": False}


def _escalation_rule(w: World) -> dict[str, Any]:
    rule = w.admin.ok("POST", "/api/escalation-rules", _escalation_rule_body(w), status=201)
    return {"rule_id": rule["id"]}


def _webhook_body(w: World) -> dict[str, Any]:
    # Inactive, to a port nobody listens on: the matrix's incidents never reach it.
    return {"url": "http://127.0.0.1:9/hook", "event_types": ["incident.created"], "region": w.region, "active": False}


def _webhook(w: World) -> dict[str, Any]:
    hook = w.admin.ok("POST", "/api/webhooks", _webhook_body(w), status=201)
    return {"webhook_id": hook["id"]}


@pytest.fixture(scope="module")
def world(server: Server) -> World:
    stack = server.stack
    admin = Api(stack, stack.admin())
    world = World(stack, admin, admin.new_region(), admin.new_region())
    roles = {"viewer": ("viewer", world.region), "operator": ("operator", world.region),
             "outsider": ("operator", world.other_region)}
    world.principals["anonymous"] = Principal("anonymous", None, None)
    for name, (role, region) in roles.items():
        user = admin.new_user(role, region)
        world.principals[name] = Principal(name, user["username"], stack.login(user["username"]))
    world.principals["admin"] = Principal("admin", admin.ok("GET", "/api/auth/me")["username"], admin.token)
    return world


async def _status(world: World, key: tuple[str, str], principal: Principal) -> int:
    method, template = key
    call = CALLS.get(key, Call())
    path = template.format(**call.params(world))
    token = principal.fresh_token(world.stack) if call.fresh_session else principal.token
    if method == "WS":
        # Browsers cannot set headers on a WebSocket: the token travels as ?token=.
        return await ws_handshake(world.stack.base_url, path.split("/")[3], token=token, origin=None)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = call.body(world) if call.body else None
    async with httpx.AsyncClient(base_url=world.stack.base_url, timeout=30) as client:
        # Streamed, so a live feed answers its status without being read to the end.
        async with client.stream(method, path, params=call.query(world), json=body, headers=headers) as r:
            return r.status_code


async def test_every_route_has_an_entry_and_every_entry_a_route(world: World) -> None:
    routes = app_routes(world.stack)
    missing = sorted(routes - EXPECTED.keys())
    stale = sorted(EXPECTED.keys() - routes)
    assert not missing, f"routes without an entry in EXPECTED (decide who may call them): {missing}"
    assert not stale, f"entries in EXPECTED without a route (removed or renamed?): {stale}"


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda k: f"{k[0]} {k[1]}")
async def test_route_answers_each_principal_exactly_as_intended(world: World, key: tuple[str, str]) -> None:
    got = tuple([await _status(world, key, world.principals[name]) for name in PRINCIPALS])
    expected = EXPECTED[key]
    assert got == expected, (
        f"{key[0]} {key[1]}: "
        + ", ".join(f"{name} {g} (expected {e})" for name, g, e in zip(PRINCIPALS, got, expected, strict=True) if g != e)
    )


async def test_a_vehicle_token_is_what_the_ping_route_accepts(world: World) -> None:
    vehicle = world.vehicle()
    body = {"lat": -24.5, "lng": 28.7, "ts": datetime.now(UTC).isoformat()}
    r = httpx.post(
        f"{world.stack.base_url}/panic/api/vehicle/ping", json=body, headers={"Authorization": f"Bearer {vehicle['token']}"}
    )
    assert r.status_code == 202, r.text
