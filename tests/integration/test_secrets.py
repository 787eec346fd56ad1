"""A device secret leaves the server once: in the answer that created it (or rotated it in).

A typical admin session runs against ``naboom serve`` at DEBUG log level; every response body
and header it receives is kept. Each secret must be in exactly one of them, in no line of the
server's log, in no audit entry, and nowhere in a plain dump of the database.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.integration.ingest_helpers import random_secret
from tests.support import PG_ADMIN_URL, Server, Stack, psql, sos, unique_pid


@pytest.fixture(scope="module")
def server(real_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``naboom serve`` logging everything it would ever log."""
    real_stack.extra["NABOOM_LOG_LEVEL"] = "DEBUG"
    srv = Server(real_stack, tmp_path_factory.mktemp("logs") / "serve.log")
    srv.start()
    yield srv
    srv.stop()


@dataclass
class RecordingAdmin:
    """An admin's HTTP session that keeps every response it receives."""

    stack: Stack
    token: str
    responses: list[tuple[str, httpx.Response]] = field(default_factory=list)

    def call(self, method: str, path: str, json: Any = None, auth: bool = True, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        r = httpx.request(method, f"{self.stack.base_url}{path}", json=json, params=params, headers=headers)
        self.responses.append((f"{method} {path}", r))
        return r

    def containing(self, secret: str) -> list[str]:
        """The requests whose response carried ``secret`` (in its body or a header)."""
        forms = {secret, secret.replace("/", "\\/")}
        return [
            name for name, r in self.responses
            if any(form in r.text or form in str(r.headers) for form in forms)
        ]


def _typical_session(admin: RecordingAdmin, pid: str, region: str) -> None:
    """What an admin looks at while running the fleet."""
    for path in (
        "/api/devices",
        f"/api/devices/{pid}",
        f"/api/devices/{pid}/rejections",
        "/api/ingest/rejections",
        "/api/ingest/stats",
        "/api/audit",
        f"/api/audit?target_id={pid}",
        "/api/incidents",
        "/api/regions",
    ):
        assert admin.call("GET", path).status_code == 200, path
    for item in admin.call("GET", "/api/incidents", region=region).json()["items"]:
        assert admin.call("GET", f"/api/incidents/{item['id']}").status_code == 200


def test_a_device_secret_is_in_exactly_one_response_and_in_no_log_line_audit_entry_or_dump(
    server: Server,
) -> None:
    stack = server.stack
    name = f"admin-{uuid.uuid4().hex[:8]}"
    stack.create_user(name, "admin")
    admin = RecordingAdmin(stack, "")
    login = admin.call("POST", "/api/auth/login", {"username": name, "password": "correct-horse-1"}, auth=False)
    admin.token = login.json()["token"]
    region = f"ZA-{uuid.uuid4().hex[:6]}"
    assert admin.call("POST", "/api/regions", {"code": region, "name": region}).status_code == 201

    pid = unique_pid()
    created = admin.call("POST", "/api/devices", {"pid": pid, "region": region, "label": "Gate"})
    assert created.status_code == 201
    first = created.json()
    # The device at work: accepted, refused for a bad signature, refused for a wrong kid.
    assert stack.submit(sos(first, msg="Help")).status_code == 201
    forged = sos(first)
    forged["sig"] = sos({**first, "secret": random_secret()})["sig"]
    assert stack.submit(forged).status_code == 401
    assert stack.submit(sos({**first, "kid": 9})).status_code == 401
    _typical_session(admin, pid, region)

    rotated = admin.call("POST", f"/api/devices/{pid}/rotate")
    assert rotated.status_code == 201
    second = rotated.json()
    assert second["secret"] != first["secret"]
    assert stack.submit(sos(second, msg="Help again")).is_success
    assert admin.call("POST", f"/api/devices/{pid}/keys/1/revoke").status_code == 200
    assert admin.call("POST", f"/api/devices/{pid}/deactivate").status_code == 200
    assert admin.call("POST", f"/api/devices/{pid}/activate").status_code == 200
    _typical_session(admin, pid, region)

    assert admin.containing(first["secret"]) == ["POST /api/devices"]
    assert admin.containing(second["secret"]) == [f"POST /api/devices/{pid}/rotate"]
    assert len(admin.responses) > 25

    log_lines = server.log_path.read_text(errors="replace").splitlines()
    assert any(pid in line for line in log_lines), "the log should mention the device at DEBUG level"
    for creds in (first, second):
        leaked = [line for line in log_lines if creds["secret"] in line]
        assert not leaked, f"secret of kid {creds['kid']} in the server log: {leaked[:3]}"

    assert stack.database_url is not None
    audit = psql(stack.database_url, "SELECT string_agg(row_to_json(a)::text, E'\\n') FROM audit_entry a")
    assert f'"target_id":"{pid}"' in audit.replace(" ", "")
    assert first["secret"] not in audit and second["secret"] not in audit

    database = stack.database_url.rsplit("/", 1)[1]
    dump = subprocess.run(
        ["pg_dump", "--data-only", f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{database}"],
        check=True, capture_output=True, text=True,
    ).stdout
    assert pid in dump
    assert first["secret"] not in dump and second["secret"] not in dump
