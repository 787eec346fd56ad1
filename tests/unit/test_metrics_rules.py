"""The deploy/ alert rules and dashboard parse and use only metric names the app exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from naboom.operations.metrics import exported_names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bnaboom_[a-z_]+\b")


def _rules() -> list[dict]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_alert_rules_parse_and_cover_the_runbook() -> None:
    rules = _rules()
    names = {rule["alert"] for rule in rules}
    assert {
        "NaboomWorkersDown",
        "NaboomSubscriberDown",
        "NaboomQueueBacklog",
        "NaboomBroadcastFailures",
        "NaboomOutboxBacklog",
        "NaboomSilentDevices",
    } <= names
    for rule in rules:
        assert rule["expr"].strip() and rule["annotations"]["summary"], rule["alert"]


def test_alert_rules_refer_only_to_exported_metrics() -> None:
    used = {name for rule in _rules() for name in METRIC.findall(rule["expr"])}
    assert used, "the rules use no naboom metric"
    assert used <= exported_names(), used - exported_names()


def test_dashboard_refers_only_to_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "naboom.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in METRIC.findall(target["expr"])
    }
    assert used and used <= exported_names(), used - exported_names()
