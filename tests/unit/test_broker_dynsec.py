"""The broker's first account file: hashes Mosquitto accepts, deny-by-default roles, no leaked secrets."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from naboom.devices.dynsec import APP_ROLE, DEVICE_ROLE_PREFIX, device_role, dynsec_config, hashed_password
from tests.brokers import production_broker
from tests.support import NABOOM


def _init(path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    passwords = {"NABOOM_MQTT_ADMIN_PASSWORD": "admin-pw-1", "NABOOM_MQTT_APP_PASSWORD": "app-pw-1"}
    return subprocess.run(
        [NABOOM, "broker", "init", "--config", str(path), "--admin-user", "boss", "--app-user", "api", *extra],
        env={"PATH": os.environ["PATH"], **(passwords if env is None else env)},
        capture_output=True, text=True, timeout=60,
    )


def test_hashes_match_what_mosquitto_ctrl_writes(tmp_path: Path) -> None:
    made = tmp_path / "ctrl.json"
    subprocess.run(["mosquitto_ctrl", "dynsec", "init", str(made), "admin", "s3cret-pass"],
                   check=True, capture_output=True)
    theirs = json.loads(made.read_text())["clients"][0]
    ours = hashed_password("s3cret-pass", iterations=theirs["iterations"], salt=base64.b64decode(theirs["salt"]))
    assert ours == {k: theirs[k] for k in ("password", "salt", "iterations")}


def test_init_writes_an_owner_only_file_without_printing_passwords(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "dynsec.json"
    out = _init(path)
    assert out.returncode == 0, out.stderr
    assert "admin-pw-1" not in out.stdout + out.stderr and "app-pw-1" not in out.stdout + out.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "admin-pw-1" not in text and "app-pw-1" not in text
    data = json.loads(text)
    assert [c["username"] for c in data["clients"]] == ["boss", "api"]
    assert all(c["iterations"] >= 10_000 for c in data["clients"])
    assert data["defaultACLAccess"] == {
        "publishClientSend": False, "publishClientReceive": False, "subscribe": False, "unsubscribe": True,
    }
    # The app's user is not bound to one client id: replicas and the bridge use several.
    assert "clientid" not in data["clients"][1]


def test_init_refuses_to_overwrite_device_accounts_unless_told(tmp_path: Path) -> None:
    path = tmp_path / "dynsec.json"
    assert _init(path).returncode == 0
    path.write_text('{"clients": []}')
    refused = _init(path)
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert _init(path, "--if-missing").returncode == 0
    assert path.read_text() == '{"clients": []}'
    assert _init(path, "--force").returncode == 0
    assert json.loads(path.read_text())["clients"][0]["username"] == "boss"


def test_init_reads_passwords_from_the_environment_only(tmp_path: Path) -> None:
    out = _init(tmp_path / "dynsec.json", env={})
    assert out.returncode == 1 and "NABOOM_MQTT_ADMIN_PASSWORD" in out.stderr
    assert not (tmp_path / "dynsec.json").exists()


def test_a_device_role_names_only_its_own_topics() -> None:
    role = device_role("btn-7")
    assert role["rolename"] == DEVICE_ROLE_PREFIX + "btn-7"
    assert {(a["acltype"], a["topic"]) for a in role["acls"]} == {
        ("publishClientSend", "panic/ingest/btn-7"),
        ("publishClientSend", "device/btn-7/telemetry"),
        ("subscribePattern", "panic/ack/btn-7"),
        ("publishClientReceive", "panic/ack/btn-7"),
    }
    for bad in ("a/b", "+", "#", ""):
        with pytest.raises(ValueError):
            device_role(bad)


def test_the_app_role_allows_shared_subscriptions_explicitly() -> None:
    app = next(r for r in dynsec_config("a", "p", {"b": "q"})["roles"] if r["rolename"] == APP_ROLE)
    subscribe = {a["topic"] for a in app["acls"] if a["acltype"] == "subscribePattern"}
    assert "$share/+/panic/ingest/#" in subscribe and "panic/ingest/#" in subscribe


def test_mosquitto_accepts_the_written_hashes_and_refuses_wrong_passwords(tmp_path: Path) -> None:
    with production_broker(tmp_path) as broker:
        probes = [
            broker.probe(broker.admin_user, broker.admin_password),
            broker.probe(broker.app_user, broker.app_password),
            broker.probe(broker.app_user, broker.app_password + "x"),
            broker.probe(broker.admin_user, broker.app_password),
        ]
        try:
            assert [p.accepted for p in probes] == [True, True, False, False]
            assert probes[2].connack is not None and probes[2].connack.value == 0x87
        finally:
            for probe in probes:
                probe.close()
