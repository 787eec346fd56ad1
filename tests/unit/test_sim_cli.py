"""``naboom-sim`` usage errors: exit code 2, a clear message, and nothing queued."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from naboom_sim.cli import main

SECRET = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    path = tmp_path / "device.json"
    path.write_text(json.dumps({"pid": "farm-gate", "kid": 1, "secret": SECRET}))
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--broker", "http://host"], "scheme must be one of"),
        (["--broker", "mqtt://host", "--lat", "-24.5"], "both --lat and --lng"),
    ],
)
def test_bad_sos_options_exit_2_without_queueing(credentials: Path, tmp_path: Path, extra: list[str], message: str) -> None:
    outbox = tmp_path / "outbox"
    result = CliRunner().invoke(main, ["sos", "--credentials", str(credentials), "--outbox", str(outbox), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not outbox.exists()


def test_a_broken_credentials_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = CliRunner().invoke(main, ["sos", "--credentials", str(bad), "--broker", "mqtt://host"])
    assert result.exit_code == 2
    assert "not JSON" in result.output


def test_give_up_after_zero_only_queues(credentials: Path, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    args = ["--credentials", str(credentials), "--outbox", str(outbox)]
    # No broker listens on port 9 (discard); with no time to try, the SOS just waits in the outbox.
    raised = CliRunner().invoke(main, ["sos", *args, "--broker", "mqtt://127.0.0.1:9", "--give-up-after", "0"])
    assert raised.exit_code == 3, raised.output
    listed = CliRunner().invoke(main, ["outbox", "list", *args, "--json"])
    assert listed.exit_code == 0 and len(listed.output.splitlines()) == 1
