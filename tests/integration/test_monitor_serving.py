"""``naboom serve`` on embedded defaults serves a monitor build (``NABOOM_MONITOR_DIR``) at ``/monitor/``.

The build here is a small stand-in made by the test (an ``index.html`` and hashed assets, laid out
as Vite lays them out), so these tests need no Node.js; ``tests/e2e`` load the real one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.integration.api_helpers import assert_problem
from tests.support import Server, Stack

pytestmark = pytest.mark.embedded

INDEX = (
    '<!doctype html><html><head><script type="module" crossorigin src="/monitor/assets/index-3f9a.js"></script>'
    '<link rel="stylesheet" href="/monitor/assets/index-77c1.css"></head><body><div id="app"></div></body></html>'
)
# Large enough to be worth compressing, as every real chunk is.
SCRIPT = "".join(f"export const line{i} = 'the control room watches region {i}';\n" for i in range(200))
STYLE = "".join(f".incident-{i} {{ color: #b00; font-size: 2rem; }}\n" for i in range(100))


@dataclass
class Monitor:
    server: Server
    dist: Path

    def get(self, path: str, **headers: str) -> httpx.Response:
        return httpx.get(f"{self.server.stack.base_url}{path}", headers=headers, timeout=30)


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    """An embedded ``naboom serve`` whose monitor directory is a build this module controls."""
    dist = tmp_path_factory.mktemp("monitor") / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(INDEX)
    (dist / "assets" / "index-3f9a.js").write_text(SCRIPT)
    (dist / "assets" / "index-77c1.css").write_text(STYLE)
    (dist / "favicon.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    # Outside the build, beside it: no path under /monitor/ may reach it.
    (dist.parent / "secret.txt").write_text("not for browsers")
    stack = Stack(
        var_dir=tmp_path_factory.mktemp("monitor-var"),
        database_url=None,
        redis_url=None,
        mqtt_url=None,
        extra={"NABOOM_MONITOR_DIR": str(dist)},
    )
    stack.cli("migrate")
    server = Server(stack, tmp_path_factory.mktemp("monitor-logs") / "serve.log")
    server.start()
    yield Monitor(server, dist)
    server.stop()


def test_the_monitor_page_is_public_and_revalidated_on_every_load(monitor: Monitor) -> None:
    r = monitor.get("/monitor/")
    assert r.status_code == 200, r.text
    assert r.text == INDEX
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"
    # The page is public; the data behind it is not.
    assert monitor.get("/api/incidents").status_code == 401


def test_the_address_without_its_slash_redirects_to_the_one_with_it(monitor: Monitor) -> None:
    r = monitor.get("/monitor")
    assert r.status_code == 301 and r.headers["location"] == "/monitor/"


def test_the_apps_own_routes_answer_the_monitor_page(monitor: Monitor) -> None:
    for path in ("/monitor/login", f"/monitor/incidents/{uuid.uuid4()}", "/monitor/admin/devices"):
        r = monitor.get(path)
        assert (r.status_code, r.text) == (200, INDEX), path
        assert r.headers["cache-control"] == "no-cache"


def test_hashed_assets_are_cached_for_a_year_and_sent_gzipped(monitor: Monitor) -> None:
    r = monitor.get("/monitor/assets/index-3f9a.js", **{"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["content-type"].startswith("text/javascript")
    assert "Accept-Encoding" in r.headers["vary"]
    assert r.text == SCRIPT
    assert r.num_bytes_downloaded < len(SCRIPT) / 3

    css = monitor.get("/monitor/assets/index-77c1.css", **{"Accept-Encoding": "gzip, deflate"})
    assert css.headers["content-type"].startswith("text/css") and css.headers["content-encoding"] == "gzip"
    assert css.text == STYLE


def test_a_client_that_refuses_gzip_gets_the_plain_file(monitor: Monitor) -> None:
    for refusal in ("identity", "gzip;q=0"):
        r = monitor.get("/monitor/assets/index-3f9a.js", **{"Accept-Encoding": refusal})
        assert r.status_code == 200
        assert "content-encoding" not in r.headers
        assert r.content == SCRIPT.encode()


def test_files_outside_assets_are_served_but_revalidated(monitor: Monitor) -> None:
    r = monitor.get("/monitor/favicon.svg")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert r.headers["cache-control"] == "no-cache"


def test_a_missing_asset_is_a_404_problem_not_the_page(monitor: Monitor) -> None:
    problem = assert_problem(monitor.get("/monitor/assets/index-0000.js"), 404)
    assert "index-0000.js" in problem["detail"]


def test_an_unchanged_file_revalidates_with_304(monitor: Monitor) -> None:
    first = monitor.get("/monitor/", **{"Accept-Encoding": "gzip"})
    again = monitor.get("/monitor/", **{"Accept-Encoding": "gzip", "If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == first.headers["etag"]


def test_no_path_under_monitor_reaches_files_outside_the_build(monitor: Monitor) -> None:
    for path in ("/monitor/%2e%2e/secret.txt", "/monitor/assets/%2e%2e/%2e%2e/secret.txt", "/monitor/..%2fsecret.txt"):
        r = monitor.get(path)
        assert "not for browsers" not in r.text, path
        assert r.status_code in (200, 404), path


def test_a_new_build_is_served_without_a_restart(monitor: Monitor) -> None:
    index = monitor.dist / "index.html"
    rebuilt = INDEX.replace("index-3f9a.js", "index-9b2e.js")
    index.write_text(rebuilt)
    try:
        r = monitor.get("/monitor/")
        assert r.text == rebuilt
    finally:
        index.write_text(INDEX)
    assert monitor.get("/monitor/").text == INDEX


def test_without_a_build_the_monitor_answers_503_saying_how_to_build_it(monitor: Monitor) -> None:
    index = monitor.dist / "index.html"
    aside = monitor.dist / "index.html.aside"
    index.rename(aside)
    try:
        problem = assert_problem(monitor.get("/monitor/"), 503)
        assert "npm run build" in problem["detail"] and "NABOOM_MONITOR_DIR" in problem["detail"]
        assert_problem(monitor.get("/monitor/incidents/x"), 503)
        # Still no such file: the answer for a missing asset does not depend on the build.
        assert_problem(monitor.get("/monitor/assets/index-0000.js"), 404)
    finally:
        aside.rename(index)
    assert monitor.get("/monitor/").status_code == 200


def test_the_front_page_sends_browsers_to_the_monitor(monitor: Monitor) -> None:
    r = monitor.get("/")
    assert r.status_code == 302 and r.headers["location"] == "/monitor/"
