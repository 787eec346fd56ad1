"""The deploy templates' renderer, and the production Mosquitto template it fills."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from naboom.deploy.render import MissingTemplateValue, placeholders, render_template
from tests.brokers import TEMPLATE, production_broker


def test_only_braced_placeholders_are_replaced() -> None:
    text = "proxy_set_header Host $host; listen ${PORT}; rewrite ^/(.*)$ /$1; ${NAME}${PORT} $${X}"
    rendered = render_template(text, {"PORT": "8443", "NAME": "naboom", "X": "x"})
    assert rendered == "proxy_set_header Host $host; listen 8443; rewrite ^/(.*)$ /$1; naboom8443 $x"


def test_a_missing_value_is_named_in_the_error() -> None:
    with pytest.raises(MissingTemplateValue) as caught:
        render_template("${B} ${A} ${B} $host", {})
    assert caught.value.names == ["A", "B"]
    assert "${A}, ${B}" in str(caught.value)


def test_values_are_not_rendered_again() -> None:
    assert render_template("${A}", {"A": "${B}"}) == "${B}"


def test_the_production_template_names_its_placeholders_and_secures_the_broker() -> None:
    text = TEMPLATE.read_text()
    assert placeholders(text) == {
        "MQTT_BIND", "MQTT_PORT", "MQTT_WS_BIND", "MQTT_WS_PORT", "DATA_DIR", "DYNSEC_PLUGIN", "DYNSEC_FILE",
        "RUN_AS_USER",
    }
    settings = {
        line.split()[0]: line.split(maxsplit=1)[1]
        for line in text.splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith("listener")
    }
    assert settings["allow_anonymous"] == "false"
    assert settings["persistence"] == "true"
    assert settings["plugin"] == "${DYNSEC_PLUGIN}"
    assert int(settings["max_inflight_messages"]) >= 2000 and int(settings["max_queued_messages"]) >= 100000
    assert int(settings["max_packet_size"]) <= 65536
    assert re.search(r"^listener \$\{MQTT_WS_PORT\} \$\{MQTT_WS_BIND\}\nprotocol websockets$", text, re.M)


def test_the_rendered_template_runs_on_this_machines_mosquitto(tmp_path: Path) -> None:
    with production_broker(tmp_path) as broker:
        assert "Loading plugin" in broker.log() and "Opening websockets listen socket" in broker.log()
        probe = broker.probe(broker.app_user, broker.app_password)
        try:
            assert probe.accepted
        finally:
            probe.close()
