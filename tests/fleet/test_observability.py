"""Grafana, Prometheus, the collector, Tempo and Loki: configuration parses, is wired together, and every query
uses only metric names the services really export (quark_sdk.telemetry)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fleetkit import ALL_MODULES, DEPLOY, EXPORTED_METRICS, ROUTES, TRAEFIK_METRICS, load_compose

KNOWN_METRICS = EXPORTED_METRICS | TRAEFIK_METRICS

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "quark-fleet.json"

PROMQL_WORDS = frozenset({
    # aggregations, keywords and modifiers
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "atop", "inf", "nan", "le",
})


def sdk_metric_names() -> set[str]:
    """The series names the SDK's collectors expose (counters add _total)."""
    from prometheus_client.metrics import MetricWrapperBase

    from quark_sdk import telemetry

    names = set()
    for attr in telemetry.__all__:
        obj = getattr(telemetry, attr)
        if isinstance(obj, MetricWrapperBase):
            names.add(obj._name + ("_total" if obj._type == "counter" else ""))
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (good enough for dashboards: no subqueries in strings)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)            # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)                      # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                     # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)                   # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def base_metric(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in KNOWN_METRICS:
            return name[: -len(suffix)]
    return name


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_exported_metric_list_matches_the_sdk() -> None:
    assert sdk_metric_names() == set(EXPORTED_METRICS)


def test_promql_name_extraction() -> None:
    expr = ('histogram_quantile(0.95, sum by (service, le) (rate(quark_http_request_duration_seconds_bucket'
            '{service=~"$service", route!="x"}[$__rate_interval]))) / on(service) group_left up')
    assert metric_names(expr) == {"quark_http_request_duration_seconds_bucket", "up"}
    assert metric_names("max by (docked_module, state) (quark_hub_module_health == 1)") == {"quark_hub_module_health"}


def test_dashboard_is_valid_grafana_json(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] == "Quark fleet"
    assert dashboard["uid"] == "quark-fleet"
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels(dashboard):
        grid = p["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and grid["x"] + grid["w"] <= 24
        if p["type"] != "row":
            assert p["targets"], f"panel {p['title']} has no query"


def test_every_dashboard_query_uses_exported_metrics(dashboard: dict[str, Any]) -> None:
    used: set[str] = set()
    for p in panels(dashboard):
        for target in p.get("targets", []):
            ds = target.get("datasource") or p.get("datasource") or {}
            if ds.get("type") == "loki":
                continue
            names = {base_metric(n) for n in metric_names(target["expr"])}
            unknown = names - KNOWN_METRICS
            assert not unknown, f"panel {p['title']!r} uses metrics the services do not export: {unknown}"
            used |= names
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            for name in re.findall(r"label_values\((\w+)", var["definition"]):
                assert name in EXPORTED_METRICS
    # request rate, errors, latency, consumer lag, outbox, module health, WebSockets: all on the dashboard
    assert {"quark_http_requests_total", "quark_http_request_duration_seconds", "quark_consumer_pending_messages",
            "quark_outbox_backlog", "quark_hub_module_health", "quark_websocket_connections",
            "quark_event_delivery_lag_seconds"} <= used


def test_dashboard_shows_what_the_issue_asks_for(dashboard: dict[str, Any]) -> None:
    titles = " | ".join(p["title"].lower() for p in panels(dashboard))
    for words in ("request rate", "error rate", "p95 latency by service", "p95 latency by route", "consumer lag",
                  "outbox backlog", "module health", "websocket"):
        assert words in titles, f"no panel about {words}"


def test_alert_rules_use_exported_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "quark.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            names = {base_metric(n) for n in metric_names(rule["expr"])} - {"up"}
            assert names <= KNOWN_METRICS, f"{rule['alert']}: {names - KNOWN_METRICS}"


def test_datasources_link_traces_logs_and_metrics() -> None:
    conf = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yml").read_text())
    by_uid = {d["uid"]: d for d in conf["datasources"]}
    assert set(by_uid) == {"prometheus", "tempo", "loki"}
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090" and by_uid["prometheus"]["isDefault"]
    assert by_uid["tempo"]["jsonData"]["tracesToLogsV2"]["datasourceUid"] == "loki"
    assert by_uid["tempo"]["jsonData"]["tracesToLogsV2"]["filterByTraceID"] is True
    derived = by_uid["loki"]["jsonData"]["derivedFields"][0]
    assert derived["datasourceUid"] == "tempo" and derived["url"].startswith("$$")
    compose = load_compose()["services"]
    hosts = {d["url"].split("//")[1].split(":")[0] for d in conf["datasources"]}
    assert hosts <= set(compose)


def test_grafana_provisioning_is_mounted(dashboard: dict[str, Any]) -> None:
    grafana = load_compose()["services"]["grafana"]
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in grafana["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == f"{path}/{DASHBOARD.name}"


def test_prometheus_scrapes_every_module_on_its_port() -> None:
    conf = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    quark = next(j for j in conf["scrape_configs"] if j["job_name"] == "quark")
    assert quark["metrics_path"] == "/metrics"
    targets = {sd["names"][0]: sd["port"] for sd in quark["dns_sd_configs"]}
    assert targets == {name: ROUTES[name][0] for name in ALL_MODULES}
    services = load_compose()["services"]
    for job in conf["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host = target.split(":")[0]
                assert host == "127.0.0.1" or host in services, f"{job['job_name']}: unknown host {host}"
    assert "--web.enable-remote-write-receiver" in services["prometheus"]["command"]


def test_collector_tempo_and_loki_configs_are_wired() -> None:
    otel = yaml.safe_load((DEPLOY / "otel" / "config.yaml").read_text())
    pipelines = otel["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["otlp/tempo"]
    assert "otlphttp/loki" in pipelines["logs"]["exporters"]
    for pipeline in pipelines.values():
        for part in ("receivers", "processors", "exporters"):
            for name in pipeline.get(part, []):
                assert name in otel[part], f"pipeline uses undefined {part[:-1]} {name}"
    assert otel["exporters"]["otlp/tempo"]["endpoint"] == "tempo:4317"
    assert otel["exporters"]["otlphttp/loki"]["endpoint"] == "http://loki:3100/otlp"
    services = load_compose()["services"]
    for name in ALL_MODULES:
        assert services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
        assert services[name]["labels"] == {"io.quark.module": name}
        assert services[name]["logging"]["options"]["labels"] == "io.quark.module"
    tempo = yaml.safe_load((DEPLOY / "tempo" / "tempo.yaml").read_text())
    assert tempo["server"]["http_listen_port"] == 3200
    assert tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    loki = yaml.safe_load((DEPLOY / "loki" / "loki.yaml").read_text())
    assert loki["server"]["http_listen_port"] == 3100
    assert loki["limits_config"]["allow_structured_metadata"] is True
