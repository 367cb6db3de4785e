"""deploy/k8s: every manifest validates against the Kubernetes API schemas (kubernetes-validate), and every
module has a probed, resourced Deployment, a Service on its manifest port and an HPA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fleetkit import ALL_MODULES, DEPLOY, EXTRA_MODULES, ROUTES, STATION_MODULES, yaml_documents

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.31.0"
CRD_GROUPS = ("traefik.io/",)  # Traefik's CRDs: not in the Kubernetes schemas, checked by shape below
FILES = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def all_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in FILES for doc in yaml_documents(path)]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(K8S).as_posix())
def test_manifests_validate_against_the_kubernetes_schemas(path: Path) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in yaml_documents(path):
        if doc["apiVersion"].startswith(CRD_GROUPS):
            assert doc["kind"] in {"Middleware", "IngressRoute"} and doc["spec"], doc["metadata"]["name"]
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_validation_catches_a_broken_manifest() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "two", "selector": {}, "template": {"spec": {"containers": [{"nmae": "x"}]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = {(K8S / r).resolve() for r in kust["resources"]}
    expected = {p.resolve() for p in FILES if p.name != "secrets.example.yaml"}
    assert listed == expected
    assert {i["name"] for i in kust["images"]} == {f"quark/{m}" for m in (*STATION_MODULES, *EXTRA_MODULES)}


@pytest.mark.parametrize("module", ALL_MODULES)
def test_each_module_has_deployment_service_and_hpa(module: str) -> None:
    docs = {d["kind"]: d for d in yaml_documents(K8S / "modules" / f"{module}.yaml")}
    port = ROUTES[module][0]
    dep = docs["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["serve", module]
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert container["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    (migrate,) = pod["initContainers"]
    assert migrate["args"] == ["migrate", module] and migrate["image"] == container["image"]
    env = {e["name"]: e for e in container["env"]}
    assert env[f"QUARK_{module.upper()}_INSTANCE_URL"]["value"] == f"http://$(POD_IP):{port}"
    assert list(env).index("POD_IP") < list(env).index(f"QUARK_{module.upper()}_INSTANCE_URL")
    assert env[f"QUARK_{module.upper()}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == f"quark-{module}-db"
    assert {"configMapRef": {"name": "quark-config"}} in container["envFrom"]
    svc = docs["Service"]
    assert svc["spec"]["ports"][0]["port"] == port and svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    hpa = docs["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == module
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert docs["PodDisruptionBudget"]["spec"]["selector"] == dep["spec"]["selector"]


def test_secret_references_are_all_in_the_example() -> None:
    example = {d["metadata"]["name"]: d for d in yaml_documents(K8S / "secrets.example.yaml")}
    config = next(d for d in yaml_documents(K8S / "config.yaml") if d["kind"] == "ConfigMap")
    for path, doc in all_docs():
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        for c in pod["containers"] + pod.get("initContainers", []):  # web has no migrate init container
            for e in c["env"]:
                ref = e.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    name, key = ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]
                    assert key in example[name]["stringData"], f"{path.name}: secret {name}/{key}"
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["key"] in config["data"]
    for doc in example.values():
        for value in doc["stringData"].values():
            assert "CHANGE-ME" in value, "the example must hold no real secret"


@pytest.mark.parametrize("module", ALL_MODULES)
def test_every_module_gets_the_hub_registration_token_from_a_secret(module: str) -> None:
    """The SDK sends QUARK_HUB_REGISTRATION_TOKEN on register/heartbeat/deregister; the hub requires it in prod."""
    dep = next(d for d in yaml_documents(K8S / "modules" / f"{module}.yaml") if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    for container in pod["containers"] + pod["initContainers"]:
        env = {e["name"]: e for e in container["env"]}
        ref = env["QUARK_HUB_REGISTRATION_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "quark-hub-registration", "key": "token"}, f"{module}/{container['name']}"
    example = {d["metadata"]["name"]: d for d in yaml_documents(K8S / "secrets.example.yaml")}
    assert "token" in example["quark-hub-registration"]["stringData"]


def test_hub_and_auth_take_client_addresses_from_the_gateway() -> None:
    """Per-client rate limits behind the Ingress: the hub trusts the cluster's proxies, auth the proxy headers."""
    hub = next(d for d in yaml_documents(K8S / "modules" / "hub.yaml") if d["kind"] == "Deployment")
    (container,) = hub["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    key = env["QUARK_HUB_TRUSTED_PROXIES"]["valueFrom"]["configMapKeyRef"]["key"]
    config = next(d for d in yaml_documents(K8S / "config.yaml") if d["kind"] == "ConfigMap")
    import json

    assert json.loads(config["data"][key])
    auth = next(d for d in yaml_documents(K8S / "modules" / "auth.yaml") if d["kind"] == "Deployment")
    (container,) = auth["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in container["env"]}["QUARK_AUTH_TRUST_PROXY_HEADERS"] == "true"


@pytest.mark.parametrize("module", (*ALL_MODULES, *EXTRA_MODULES))
def test_every_module_connects_to_nats_as_its_own_user(module: str) -> None:
    """As deploy/nats/nats.conf does for compose: QUARK_<MODULE>_NATS_URL from the module's own Secret, whose
    example URL carries the module's user name (no module shares the operator's or another module's user)."""
    dep = next(d for d in yaml_documents(K8S / "modules" / f"{module}.yaml") if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    var = f"QUARK_{module.upper().replace('-', '_')}_NATS_URL"
    example = {d["metadata"]["name"]: d for d in yaml_documents(K8S / "secrets.example.yaml")}
    for container in pod["containers"] + pod["initContainers"]:
        env = {e["name"]: e for e in container["env"]}
        assert "QUARK_NATS_URL" not in env, f"{module}/{container['name']}: the shared NATS URL"
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"quark-{module}-nats", "key": "url"}, f"{module}/{container['name']}"
    assert example[f"quark-{module}-nats"]["stringData"]["url"].startswith(f"nats://{module}:")


def test_the_web_client_is_deployed_and_routed_last() -> None:
    """DESIGN §3: web takes `/` at the lowest priority; no database (no migrate job), no NATS, no Vault."""
    docs = {d["kind"]: d for d in yaml_documents(K8S / "modules" / "web.yaml")}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["serve", "web"] and "initContainers" not in pod
    assert container["ports"][0]["containerPort"] == 3008
    env = {e["name"] for e in container["env"]}
    assert {"QUARK_WEB_INSTANCE_URL", "QUARK_WEB_PUBLIC_URL", "QUARK_REDIS_URL", "QUARK_HUB_REGISTRATION_TOKEN"} <= env
    assert not any("DATABASE" in n or "NATS" in n or "VAULT" in n for n in env)
    assert docs["Service"]["spec"]["ports"][0]["port"] == 3008
    ingress = next(d for d in yaml_documents(K8S / "ingress.yaml") if d["kind"] == "Ingress")
    paths = {p["path"]: p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert paths["/"] == "web" and paths["/api/v1/posts"] == "blog"
