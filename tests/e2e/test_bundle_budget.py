"""``frontend/scripts/check-bundle.mjs`` (the test command's bundle budget) on small builds made here."""

from __future__ import annotations

import gzip
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

SCRIPT = ROOT / "frontend" / "scripts" / "check-bundle.mjs"
NODE = shutil.which("node")


def incompressible(size: int, seed: int) -> str:
    """JavaScript text that gzip cannot shrink much, so sizes are predictable."""
    rng = random.Random(seed)
    return "/*" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(size)) + "*/"


def build(dist: Path, files: dict[str, str], head: str) -> Path:
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(f"<!doctype html><html><head>{head}</head><body></body></html>")
    for name, text in files.items():
        (dist / "assets" / name).write_text(text)
    return dist


def check(dist: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert NODE, "node is missing (the test command installs it)"
    return subprocess.run([NODE, str(SCRIPT), "--dist", str(dist), *args], capture_output=True, text=True, timeout=60)


def gz(text: str) -> int:
    """The gzip size (Node's zlib and Python's differ by a few bytes)."""
    return len(gzip.compress(text.encode(), 9))


def reported(stdout: str) -> int:
    """The total the script printed, in bytes."""
    match = re.search(r"operator bundle: [\d.]+ kB gzip \((\d+) bytes;", stdout)
    assert match, stdout
    return int(match.group(1))


@pytest.fixture
def app_build(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An entry importing a vendor chunk statically, an admin chunk and the basemap dynamically."""
    files = {
        "index-a1.js": 'import{a as e}from"./vue-b2.js";import"./leaflet-c3.js";'
        'const admin=()=>import("./AdminLayout-d4.js");const map=()=>import(`./basemap-data-e5.js`);'
        + incompressible(3000, 1),
        "vue-b2.js": "export const a=1;" + incompressible(5000, 2),
        "leaflet-c3.js": 'export{a}from"./vue-b2.js";' + incompressible(4000, 3),
        "AdminLayout-d4.js": incompressible(50_000, 4),
        "basemap-data-e5.js": incompressible(50_000, 5),
        "index-f6.css": ".incident{color:red}" * 100,
        "admin-g7.css": ".admin{color:blue}" * 100,
    }
    head = (
        '<script type="module" crossorigin src="/monitor/assets/index-a1.js"></script>'
        '<link rel="modulepreload" crossorigin href="/monitor/assets/vue-b2.js">'
        '<link rel="stylesheet" crossorigin href="/monitor/assets/index-f6.css">'
    )
    return build(tmp_path / "dist", files, head), files


def test_the_budget_counts_every_chunk_but_the_map_data_and_lists_the_initial_download(
    app_build: tuple[Path, dict[str, str]],
) -> None:
    dist, files = app_build
    r = check(dist, "--budget", "250")
    assert r.returncode == 0, r.stdout + r.stderr
    listed = {line.split()[-1] for line in r.stdout.splitlines() if "kB raw" in line}
    assert listed == {"assets/index-a1.js", "assets/vue-b2.js", "assets/leaflet-c3.js", "assets/index-f6.css"}
    # Lazy chunks (the admin screens) count too: an upper bound of what an operator loads.
    expected = sum(gz(text) for name, text in files.items() if not name.startswith("basemap"))
    assert reported(r.stdout) == pytest.approx(expected, rel=0.02)


def test_above_the_budget_it_fails_and_says_by_how_much(app_build: tuple[Path, dict[str, str]]) -> None:
    dist, _ = app_build
    r = check(dist, "--budget", "5")
    assert r.returncode == 1
    assert "budget 5 kB: OVER" in r.stdout


def test_the_basemap_data_does_not_count_even_when_imported_statically(tmp_path: Path) -> None:
    files = {
        "index-a1.js": 'import"./basemap-data-e5.js";' + incompressible(1000, 6),
        "basemap-data-e5.js": incompressible(300_000, 7),
    }
    dist = build(tmp_path / "dist", files, '<script type="module" src="/monitor/assets/index-a1.js"></script>')
    r = check(dist, "--budget", "250")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "basemap-data-e5.js  (map data: not counted)" in r.stdout
    assert reported(r.stdout) == pytest.approx(gz(files["index-a1.js"]), rel=0.02)


def test_a_missing_build_is_an_error_not_a_pass(tmp_path: Path) -> None:
    r = check(tmp_path / "nothing-here")
    assert r.returncode == 1
    assert "npm run build" in r.stderr
