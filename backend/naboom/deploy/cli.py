"""``naboom edge``: render the deployment's configs (nginx site, any ``${NAME}`` template) on a host.

Here rather than in the container images so a VPS without containers gets the same text.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from naboom.deploy.nginx import EdgeSettings, render_site, write_config
from naboom.deploy.render import MissingTemplateValue, render_template


@click.group()
def edge() -> None:
    """Render the production edge's configs (nginx, Mosquitto)."""


@edge.command("render")
@click.argument("template", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def render(template: Path, out: Path) -> None:
    """Fill TEMPLATE's ``${NAME}`` placeholders from the environment; fails naming any unset one."""
    try:
        text = render_template(template.read_text(), os.environ)
    except MissingTemplateValue as exc:
        raise click.ClickException(str(exc)) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    click.echo(f"wrote {out}")


@edge.command("render-nginx")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the site file (or, with --standalone, a whole nginx prefix).")
@click.option("--server-name", required=True, help="The public host name(s), space-separated.")
@click.option("--tls-cert", required=True, help="Certificate chain (PEM), e.g. certbot's fullchain.pem.")
@click.option("--tls-key", required=True, help="Its private key (PEM).")
@click.option("--monitor-root", required=True, help="The built monitor (frontend/dist).")
@click.option("--app", "app_upstream", default="127.0.0.1:8000", show_default=True, help="naboom serve (host:port).")
@click.option("--mqtt-ws", "mqtt_ws_upstream", default="127.0.0.1:8083", show_default=True,
              help="Mosquitto's websockets listener (host:port).")
@click.option("--admin-allow", multiple=True, default=("127.0.0.1", "::1"), show_default=True,
              help="A CIDR of the admins' networks (repeatable).")
@click.option("--ping-rate", default="5r/s", show_default=True)
@click.option("--ping-burst", default=20, show_default=True)
@click.option("--tile-source", "tile_sources", multiple=True, help="An extra img-src for map tiles (repeatable).")
@click.option("--acme-root", default="/var/www/certbot", show_default=True)
@click.option("--access-log", default="/var/log/nginx/naboom.access.log", show_default=True)
@click.option("--standalone", is_flag=True, help="Also write a main nginx.conf for `nginx -p OUT -c OUT/nginx.conf`.")
def render_nginx(
    out: Path,
    server_name: str,
    tls_cert: str,
    tls_key: str,
    monitor_root: str,
    app_upstream: str,
    mqtt_ws_upstream: str,
    admin_allow: tuple[str, ...],
    ping_rate: str,
    ping_burst: int,
    tile_sources: tuple[str, ...],
    acme_root: str,
    access_log: str,
    standalone: bool,
) -> None:
    """Render the nginx site (for /etc/nginx/conf.d/ on a VPS; snippets go to /etc/nginx/snippets/)."""
    settings = EdgeSettings(
        server_name=server_name,
        tls_cert=tls_cert,
        tls_key=tls_key,
        monitor_root=monitor_root,
        app_upstream=app_upstream,
        mqtt_ws_upstream=mqtt_ws_upstream,
        admin_allow=admin_allow,
        ping_rate=ping_rate,
        ping_burst=ping_burst,
        csp_tile_sources=tile_sources,
        acme_root=acme_root,
        access_log=access_log,
    )
    try:
        if standalone:
            click.echo(f"wrote {write_config(out.resolve(), settings)}")
            return
        out.mkdir(parents=True, exist_ok=True)
        (out / "naboom.conf").write_text(render_site(settings))
    except ValueError as exc:  # an admin CIDR that is not one
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {out / 'naboom.conf'}")
