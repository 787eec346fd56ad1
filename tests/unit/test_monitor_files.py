"""The monitor's file lookup and gzip negotiation, on a build directory made here."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from naboom.monitor.controller import accepts_gzip
from naboom.monitor.files import MonitorFiles
from naboom.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def files(tmp_path: Path) -> MonitorFiles:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>monitor</title>")
    (dist / "assets" / "app-1a2b.js").write_text("export const x = 1;\n" * 100)
    (dist / "assets" / "logo-3c4d.png").write_bytes(b"\x89PNG" + bytes(2000))
    (dist / ".env").write_text("SECRET=1")
    (tmp_path / "outside.txt").write_text("outside")
    (dist / "assets" / "link.txt").symlink_to(tmp_path / "outside.txt")
    return MonitorFiles(dist)


def test_the_default_build_is_the_checkouts_frontend_dist(tmp_path: Path) -> None:
    assert Settings.from_env({"NABOOM_VAR_DIR": str(tmp_path)}).monitor_dir == ROOT / "frontend" / "dist"
    other = tmp_path / "build"
    assert Settings.from_env({"NABOOM_VAR_DIR": str(tmp_path), "NABOOM_MONITOR_DIR": str(other)}).monitor_dir == other


def test_assets_are_immutable_and_text_is_gzipped_once(files: MonitorFiles) -> None:
    script = files.get("assets/app-1a2b.js")
    assert script is not None and script.immutable and script.media_type == "text/javascript"
    assert script.gzipped is not None and gzip.decompress(script.gzipped) == script.body
    assert files.get("assets/app-1a2b.js") is script  # read from disk once per version
    image = files.get("assets/logo-3c4d.png")
    assert image is not None and image.gzipped is None and image.media_type == "image/png"
    index = files.index()
    assert index is not None and not index.immutable


def test_a_changed_file_is_read_again(files: MonitorFiles) -> None:
    first = files.get("index.html")
    (files.root / "index.html").write_text("<!doctype html><title>rebuilt monitor</title>")
    second = files.get("index.html")
    assert first is not None and second is not None
    assert b"rebuilt" in second.body and second.etag != first.etag


@pytest.mark.parametrize(
    "relative", ["../outside.txt", "assets/../../outside.txt", ".env", "assets/link.txt", "assets", "/etc/passwd", "a\\..\\b"]
)
def test_nothing_outside_the_build_or_hidden_is_a_file(files: MonitorFiles, relative: str) -> None:
    assert files.get(relative) is None


def test_without_index_html_there_is_no_build(tmp_path: Path) -> None:
    assert not MonitorFiles(tmp_path / "missing").built
    assert MonitorFiles(tmp_path / "missing").index() is None


@pytest.mark.parametrize(
    ("header", "gzip_ok"),
    [
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("*", True),
        ("identity", False),
        ("", False),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("GZIP", True),
    ],
)
def test_gzip_is_sent_only_where_accept_encoding_allows_it(header: str, gzip_ok: bool) -> None:
    assert accepts_gzip(header) is gzip_ok
