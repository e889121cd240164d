"""The example alert rules in config/prometheus parse, and name only metrics we export.

promtool is not packaged for bookworm's slim image; this checks the rule file's
schema (Prometheus's rule-file format) and cross-checks every metric an
expression names against what /metrics renders."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from mailctl.supervise.metrics import Metrics

RULES = Path(__file__).parents[2] / "config/prometheus/alerts.yml"
SEVERITIES = {"info", "warning", "critical"}
DURATION = re.compile(r"^\d+[smhdwy]$")


def exported() -> set[str]:
    m = Metrics()
    m.set_certificate_expiry(2_000_000_000.0)
    m.set_daemons([("cyrus", True, 0)])
    m.set_queue([])
    names = set()
    for family in text_string_to_metric_families(m.render().decode()):
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


def test_alert_rules_parse_and_name_only_exported_metrics() -> None:
    doc = yaml.safe_load(RULES.read_text())
    assert set(doc) == {"groups"}
    names = exported()
    seen = set()
    for group in doc["groups"]:
        assert set(group) <= {"name", "rules", "interval"} and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["alert"] not in seen, f"{rule['alert']} twice"
            seen.add(rule["alert"])
            assert rule["labels"]["severity"] in SEVERITIES
            assert rule["annotations"]["summary"]
            assert "for" not in rule or DURATION.match(rule["for"]), rule["for"]
            expr = rule["expr"]
            assert expr.count("(") == expr.count(")"), expr
            used = set(re.findall(r"\bmailctl_[a-z_]+", expr))
            assert used, f"{rule['alert']}: names no metric of ours"
            assert used <= names, f"{rule['alert']}: {sorted(used - names)} are not exported"
    for wanted in ("Deferred", "OldestMessage", "LocalDelivery", "Certificate", "Restarting"):
        assert any(wanted in name for name in seen), f"no alert about {wanted}"
