"""Scenario files: the shipped example parses; mistakes are reported with the step and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from naboom_sim.scenario import ScenarioError, parse_scenario
from tests.support import ROOT

EXAMPLE = ROOT / "firmware-sim" / "scenarios" / "farm-attack.toml"


def test_the_farm_attack_example_is_three_sos_within_a_minute_and_two_patrols() -> None:
    scenario = parse_scenario(EXAMPLE)
    sos = [s for s in scenario.steps if s.kind == "sos"]
    vehicles = [s for s in scenario.steps if s.kind == "vehicle"]
    assert len(sos) == 3 and len(vehicles) == 2
    assert max(s.at for s in sos) - min(s.at for s in sos) <= 60
    assert len({s.options["credentials"] for s in sos}) == 3
    # Paths are relative to the scenario file.
    assert sos[0].options["credentials"] == EXAMPLE.parent / "devices" / "farm-gate.json"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("steps = [", "not valid TOML"),
        ('name = "x"', "no steps"),
        ("speed = 1\n[[steps]]\nkind = 'sos'\ncredentials = 'a.json'", "unknown top-level key"),
        ("[[steps]]\nkind = 'panic'", r"step 1: 'kind' must be one of sos, vehicle, load, got 'panic'"),
        ("[[steps]]\nkind = 'sos'\ncredentials = 'a.json'\nat = -1", r"step 1: 'at' must be seconds"),
        ("[[steps]]\nkind = 'sos'", r"step 1 \(sos\): missing key\(s\): credentials"),
        ("[[steps]]\nkind = 'sos'\ncredentials = 'a.json'\nlattitude = 1", r"unknown key\(s\): lattitude"),
        ("[[steps]]\nkind = 'sos'\ncredentials = 'a.json'\nlat = 1", "both 'lat' and 'lng'"),
        (
            "[[steps]]\nkind = 'sos'\ncredentials = 'a.json'\n[[steps]]\nkind = 'vehicle'\ntoken = 't'\nduration = 5",
            r"step 2 \(vehicle\): give either 'route'",
        ),
        ("[[steps]]\nkind = 'vehicle'\naround = [1, 2]\nduration = 5", "exactly one of 'token'"),
        ("[[steps]]\nkind = 'vehicle'\naround = [1, 2]\ntoken = 't'", "give 'duration' or 'count'"),
        ("[[steps]]\nkind = 'load'\ndevices = 'd.jsonl'", r"missing key\(s\): duration, rate, region"),
    ],
)
def test_a_bad_scenario_is_refused_with_a_clear_message(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ScenarioError, match=error):
        parse_scenario(_write(tmp_path, text))


def test_a_missing_scenario_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"missing\.toml"):
        parse_scenario(tmp_path / "missing.toml")
