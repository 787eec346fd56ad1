"""The nginx site template rendered the ways a deployment renders it: Python (``naboom edge
render-nginx``) with ``nginx -t`` on the result, and the structure rules nginx does not check itself."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from naboom.cli import main
from naboom.deploy.nginx import NGINX_DIR, SITE_TEMPLATE, EdgeSettings, render_site, write_config
from tests.edge import EdgeCertificates, make_certificates, nginx_binary
from tests.support import free_port


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> EdgeCertificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def nginx_t(prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginx_binary(), "-t", "-p", str(prefix), "-e", str(prefix / "logs" / "error.log"), "-c", str(prefix / "nginx.conf")],
        capture_output=True, text=True, timeout=30,
    )


def _settings(certificates: EdgeCertificates, tmp_path: Path, **changes: object) -> EdgeSettings:
    values: dict[str, object] = {
        "server_name": "naboom.example.org",
        "http_listen": f"127.0.0.1:{free_port()}",
        "https_listen": f"127.0.0.1:{free_port()}",
        "tls_cert": str(certificates.cert),
        "tls_key": str(certificates.key),
        "monitor_root": str(tmp_path / "monitor"),
        "acme_root": str(tmp_path / "acme"),
        "access_log": str(tmp_path / "logs" / "access.log"),
        **changes,
    }
    return EdgeSettings(**values)  # type: ignore[arg-type]


def test_nginx_t_passes_on_the_rendered_site(certificates: EdgeCertificates, tmp_path: Path) -> None:
    settings = _settings(
        certificates, tmp_path, admin_allow=("10.0.0.0/8", "2001:db8::/32"), csp_tile_sources=("https://t.example",)
    )
    write_config(tmp_path, settings)
    checked = nginx_t(tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


def test_rendering_fills_every_placeholder_and_keeps_nginx_variables(certificates: EdgeCertificates, tmp_path: Path) -> None:
    site = render_site(_settings(certificates, tmp_path))
    assert "${" not in site
    assert "$host" in site and "$request_uri" in site and "$binary_remote_addr" in site
    assert "allow 127.0.0.1; allow ::1;" in site


def test_an_admin_network_that_is_not_a_cidr_is_refused_before_nginx_sees_it(
    certificates: EdgeCertificates, tmp_path: Path
) -> None:
    with pytest.raises(ValueError):
        render_site(_settings(certificates, tmp_path, admin_allow=("10.0.0.0/33",)))


def test_every_location_of_the_site_sends_the_security_headers() -> None:
    """add_header in a block drops the inherited ones: each location must include the snippet."""
    template = (NGINX_DIR / SITE_TEMPLATE).read_text()
    blocks = re.findall(r"location\s+([^{]+)\{(.*?)\n    \}", template, flags=re.S)
    assert len(blocks) >= 15
    https = template[template.index("ssl http2") :]
    for where, body in re.findall(r"location\s+([^{]+)\{(.*?)\n    \}", https, flags=re.S):
        assert "include snippets/security-headers.conf;" in body, f"location {where.strip()} lacks the headers"
    headers = (NGINX_DIR / "snippets" / "security-headers.conf").read_text()
    assert all(line.rstrip(";").endswith("always") for line in headers.splitlines() if line.startswith("add_header"))


def test_the_stream_location_turns_buffering_off_with_long_timeouts() -> None:
    template = (NGINX_DIR / SITE_TEMPLATE).read_text()
    stream = re.search(r"location = /panic/api/stream \{(.*?)\n    \}", template, flags=re.S)
    assert stream is not None
    body = stream.group(1)
    assert "proxy_buffering off;" in body and "proxy_cache off;" in body and "gzip off;" in body
    assert "proxy_read_timeout 2h;" in body
    assert "text/event-stream" not in template.split("gzip_types", 1)[1].split(";", 1)[0]


def test_naboom_edge_render_nginx_standalone_writes_a_config_nginx_accepts(
    certificates: EdgeCertificates, tmp_path: Path
) -> None:
    out = tmp_path / "edge"
    result = CliRunner().invoke(
        main,
        [
            "edge", "render-nginx", "--out", str(out), "--standalone", "--server-name", "naboom.example.org",
            "--tls-cert", str(certificates.cert), "--tls-key", str(certificates.key),
            "--monitor-root", str(tmp_path / "monitor"), "--admin-allow", "192.168.1.0/24",
            "--access-log", str(out / "logs" / "access.log"),
        ],
    )
    assert result.exit_code == 0, result.output
    # The VPS defaults listen on 80 and 443, which a test may not bind: check syntax with free ports.
    conf = out / "conf.d" / "naboom.conf"
    text = conf.read_text()
    assert "allow 192.168.1.0/24;" in text and "listen 443 ssl http2;" in text
    conf.write_text(
        text.replace("listen 80;", f"listen 127.0.0.1:{free_port()};").replace(
            "listen 443 ssl http2;", f"listen 127.0.0.1:{free_port()} ssl http2;"
        )
    )
    checked = nginx_t(out)
    assert checked.returncode == 0, checked.stderr


def test_naboom_edge_render_fills_a_template_from_the_environment_and_names_what_is_missing(tmp_path: Path) -> None:
    template = tmp_path / "t.conf.template"
    template.write_text("listener ${MQTT_PORT} ${MQTT_BIND}\nkeep $this\n")
    out = tmp_path / "t.conf"
    runner = CliRunner()
    ok = runner.invoke(main, ["edge", "render", str(template), "--out", str(out)], env={"MQTT_PORT": "1883", "MQTT_BIND": "0.0.0.0"})
    assert ok.exit_code == 0, ok.output
    assert out.read_text() == "listener 1883 0.0.0.0\nkeep $this\n"
    missing = runner.invoke(main, ["edge", "render", str(template), "--out", str(tmp_path / "x")], env={"MQTT_PORT": "1"})
    assert missing.exit_code != 0 and "${MQTT_BIND}" in missing.output
