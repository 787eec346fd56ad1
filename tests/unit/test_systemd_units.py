"""The systemd units of ``deploy/systemd/``: systemd's own verifier accepts them, they run real
``naboom`` subcommands, they are hardened, and the API migrates before it starts."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from naboom.cli import main
from tests.support import NABOOM, ROOT

UNITS = ROOT / "deploy" / "systemd"
INSTALLED_NABOOM = "/opt/naboom/venv/bin/naboom"
QUEUES = ("critical", "general")
Unit = dict[str, list[tuple[str, str]]]


def parse_unit(path: Path) -> Unit:
    """Sections of a unit file as ordered (key, value) lists (keys may repeat)."""
    sections: Unit = {}
    current: list[tuple[str, str]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        else:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def value(unit: Unit, section: str, key: str) -> str | None:
    found = [v for k, v in unit.get(section, []) if k == key]
    return found[-1] if found else None


@pytest.fixture(scope="module")
def units() -> dict[str, Unit]:
    found = {path.name: parse_unit(path) for path in sorted(UNITS.glob("*.service"))}
    assert set(found) == {
        "naboom-api.service",
        "naboom-migrate.service",
        "naboom-scheduler.service",
        "naboom-worker@.service",
    }
    return found


def test_systemd_analyze_verify_accepts_every_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install systemd (scripts/test does)"
    # verify checks that ExecStart's program exists: point it at this checkout's naboom.
    names = []
    for path in UNITS.glob("*.service"):
        text = path.read_text().replace(INSTALLED_NABOOM, NABOOM)
        if path.name.endswith("@.service"):
            for queue in QUEUES:
                name = path.name.replace("@.", f"@{queue}.")
                (tmp_path / name).write_text(text)
                names.append(name)
        (tmp_path / path.name).write_text(text)
        names.append(path.name)
    instances = [n for n in names if not n.endswith("@.service")]
    result = subprocess.run(
        [analyze, "verify", "--man=no", *instances], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # Unknown keys and unparsable values are only warnings to systemd: none may appear.
    complaints = [line for line in result.stderr.splitlines() if "naboom" in line and str(tmp_path) in line]
    assert complaints == []


def test_every_exec_start_is_a_real_naboom_subcommand(units: dict[str, Unit]) -> None:
    runner = CliRunner()
    for name, unit in units.items():
        command = shlex.split(value(unit, "Service", "ExecStart") or "")
        assert command[0] == INSTALLED_NABOOM, name
        for queue in QUEUES if "%i" in command else ("",):
            args = [queue if part == "%i" else part for part in command[1:]]
            result = runner.invoke(main, [*args, "--help"])
            assert result.exit_code == 0, f"{name}: `naboom {' '.join(args)}` is not a command: {result.output}"


def test_units_run_as_naboom_hardened_and_writing_only_their_state_directory(units: dict[str, Unit]) -> None:
    for name, unit in units.items():
        assert value(unit, "Service", "User") == "naboom", name
        assert value(unit, "Service", "NoNewPrivileges") == "yes", name
        assert value(unit, "Service", "ProtectSystem") == "strict", name
        assert value(unit, "Service", "ProtectHome") == "yes", name
        assert value(unit, "Service", "ReadWritePaths") == "/var/lib/naboom", name
        assert value(unit, "Service", "CapabilityBoundingSet") == "", name
        assert value(unit, "Service", "EnvironmentFile") == "/etc/naboom/naboom.env", name


def test_long_running_units_restart_and_are_installed_while_migrate_is_one_shot(units: dict[str, Unit]) -> None:
    for name, unit in units.items():
        if name == "naboom-migrate.service":
            assert value(unit, "Service", "Type") == "oneshot"
            assert value(unit, "Service", "Restart") is None
            continue
        assert value(unit, "Service", "Restart") == "always", name
        assert value(unit, "Install", "WantedBy") == "multi-user.target", name
        assert "naboom-migrate.service" in (value(unit, "Unit", "After") or ""), name
    api = units["naboom-api.service"]
    assert value(api, "Unit", "Requires") == "naboom-migrate.service"


def test_the_env_example_sets_only_settings_the_app_reads() -> None:
    settings_source = (ROOT / "backend" / "naboom" / "settings.py").read_text()
    keys = [
        line.split("=", 1)[0]
        for line in (UNITS / "naboom.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert "NABOOM_DATABASE_URL" in keys and "NABOOM_SECRET_KEY" in keys
    unknown = [key for key in keys if f'"{key}"' not in settings_source]
    assert unknown == []
