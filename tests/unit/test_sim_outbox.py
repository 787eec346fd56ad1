"""The simulator's outbox: durable, atomic entries delivered oldest first with their original ts and nonce."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from naboom_sim.credentials import Credentials, CredentialsError, load_credentials, load_devices
from naboom_sim.outbox import Outbox
from naboom_sim.signing import verify
from naboom_sim.sos import build_sos

SECRET = base64.b64encode(bytes(range(32))).decode()
DEVICE = Credentials(pid="farm-gate", kid=1, secret=SECRET)


def test_entries_survive_a_reload_in_order_with_their_original_ts_and_nonce(tmp_path: Path) -> None:
    first = Outbox(tmp_path, DEVICE.pid)
    payloads = [build_sos(DEVICE, f"SOS {i}", ts=1_700_000_000 + i) for i in range(5)]
    for payload in payloads:
        first.add(payload)

    reloaded = Outbox(tmp_path, DEVICE.pid).entries()  # a new process would see the same
    assert [e.payload for e in reloaded] == payloads
    assert [e.payload["ts"] for e in reloaded] == [1_700_000_000 + i for i in range(5)]
    assert len({e.nonce for e in reloaded}) == 5
    assert all(verify(e.payload, SECRET) for e in reloaded)


def test_a_removed_entry_is_gone_and_the_rest_keep_their_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path, DEVICE.pid)
    a, b, c = (box.add(build_sos(DEVICE)) for _ in range(3))
    box.remove(b)
    box.remove(b)  # twice is harmless: a concurrent run may have delivered it
    assert [e.nonce for e in Outbox(tmp_path, DEVICE.pid).entries()] == [a.nonce, c.nonce]


def test_a_write_leaves_no_temporary_file_and_an_interrupted_one_is_ignored(tmp_path: Path) -> None:
    box = Outbox(tmp_path, DEVICE.pid)
    entry = box.add(build_sos(DEVICE))
    assert [p.name for p in box.dir.iterdir()] == [entry.path.name]
    # What a crash between the write and the rename leaves behind: a partial temporary file.
    (box.dir / ".tmp-crashed").write_bytes(b'{"queued_at": 1, "payl')
    assert [e.nonce for e in box.entries()] == [entry.nonce]
    assert json.loads(entry.path.read_bytes())["payload"] == entry.payload


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = Outbox(tmp_path, DEVICE.pid)

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        box.add(build_sos(DEVICE))
    monkeypatch.undo()
    assert list(box.dir.iterdir()) == [] and box.entries() == []


def test_each_device_has_its_own_outbox(tmp_path: Path) -> None:
    other = Credentials(pid="farm-house", kid=1, secret=SECRET)
    Outbox(tmp_path, DEVICE.pid).add(build_sos(DEVICE))
    assert Outbox(tmp_path, other.pid).entries() == []
    assert len(Outbox(tmp_path, DEVICE.pid)) == 1


def test_an_sos_has_a_fresh_nonce_and_location_only_when_given() -> None:
    a, b = build_sos(DEVICE), build_sos(DEVICE, "help", -24.5, 28.7, 12.0)
    assert a["nonce"] != b["nonce"] and "lat" not in a and "msg" not in a
    assert (b["lat"], b["lng"], b["acc"], b["msg"]) == (-24.5, 28.7, 12.0, "help")
    with pytest.raises(ValueError, match="both lat and lng"):
        build_sos(DEVICE, lat=-24.5)


def test_credentials_files_are_checked_with_clear_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"pid": "p1", "kid": 2, "secret": SECRET, "mqtt_username": "p1", "mqtt_password": "pw"}))
    creds = load_credentials(good)
    assert (creds.pid, creds.kid, creds.mqtt_username) == ("p1", 2, "p1")
    assert creds.with_login(None, "other").mqtt_password == "other"

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"pid": "p1", "kid": 1, "secret": "not base64!"}))
    with pytest.raises(CredentialsError, match="'secret' is not valid base64"):
        load_credentials(bad)
    with pytest.raises(CredentialsError, match="cannot read"):
        load_credentials(tmp_path / "missing.json")

    lines = tmp_path / "devices.jsonl"
    lines.write_text(good.read_text() + "\n\n" + '{"pid": 5}\n')
    with pytest.raises(CredentialsError, match=r"devices.jsonl:3: 'pid'"):
        load_devices(lines)


def test_one_sender_at_a_time_per_device(tmp_path: Path) -> None:
    first, second = Outbox(tmp_path, DEVICE.pid), Outbox(tmp_path, DEVICE.pid)
    held = first.try_lock()
    assert held is not None
    assert second.try_lock() is None
    first.unlock(held)
    again = second.try_lock()
    assert again is not None
    second.unlock(again)
