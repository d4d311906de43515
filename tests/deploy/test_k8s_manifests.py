"""deploy/k8s: every object validates against the Kubernetes OpenAPI schemas (kubernetes-validate
ships them, offline, strict: unknown fields fail), KEDA and kustomize objects against schemas kept
in tests/deploy/schemas, and the objects agree with each other and with the settings classes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.helpers import REPO, settings_env_names

K8S_DIR = REPO / "deploy" / "k8s"
SCHEMAS = Path(__file__).parent / "schemas"
K8S_VERSION = "1.30"  # oldest Kubernetes minor the manifests promise to work on
# Read straight from the environment by srserve/logging_setup.py, not a settings field.
NON_SETTINGS_ENV = {"SRSERVE_LOG_FORMAT"}


def load_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


DOCS = load_docs()


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in DOCS if d["kind"] == kind]


def one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in by_kind(kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    return [(d["metadata"]["name"], d["spec"]["template"]) for d in by_kind("Deployment") + by_kind("StatefulSet")]


def config_data() -> dict[str, str]:
    return one("ConfigMap", "srserve-config")["data"]


@pytest.mark.parametrize(
    ("filename", "doc"), DOCS, ids=[f"{f}:{d['kind']}/{d.get('metadata', {}).get('name', '')}" for f, d in DOCS]
)
def test_object_validates_against_its_schema(filename: str, doc: dict[str, Any]) -> None:
    if doc["kind"] == "ScaledObject":
        jsonschema.validate(doc, schema("keda-scaledobject-v1alpha1.json"))
        for trigger in doc["spec"]["triggers"]:
            assert trigger["type"] == "redis"
            jsonschema.validate(trigger["metadata"], schema("keda-redis-trigger-metadata.json"))
        behavior = doc["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
        if behavior:  # KEDA passes it to the HPA unchanged: check it with the HPA's own schema
            hpa = {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "x"},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                    "maxReplicas": 2,
                    "behavior": behavior,
                },
            }
            kubernetes_validate.validate(hpa, K8S_VERSION, strict=True)
    elif doc["kind"] == "Kustomization":
        jsonschema.validate(doc, schema("kustomization-v1beta1.json"))
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    # Guards against a validator that silently accepts everything (e.g. a missing schema set).
    deployment = json.loads(json.dumps(one("Deployment", "srserve-worker")))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 360  # misspelled field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    scaled = json.loads(json.dumps(one("ScaledObject", "srserve-worker")))
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 8  # KEDA metadata must be strings
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, schema("keda-scaledobject-v1alpha1.json"))


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    examples = {name for name in on_disk if ".example." in name}
    assert listed == on_disk - examples
    for _, doc in DOCS:
        if doc["kind"] not in ("Kustomization", "Namespace"):
            assert doc["metadata"].get("namespace") == kustomization["namespace"], doc["metadata"]["name"]


def test_selectors_match_pod_labels() -> None:
    labels_of = {name: template["metadata"]["labels"] for name, template in pod_specs()}
    for workload in by_kind("Deployment") + by_kind("StatefulSet"):
        name = workload["metadata"]["name"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels_of[name].items()
    for service in by_kind("Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in labels_of.values()), service["metadata"]["name"]
    for pdb in by_kind("PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        matched = [n for n, labels in labels_of.items() if selector.items() <= labels.items()]
        assert matched == [pdb["metadata"]["name"]], f"PDB {pdb['metadata']['name']} selects {matched}"


def test_probes_and_references_resolve() -> None:
    configmaps = {d["metadata"]["name"] for d in by_kind("ConfigMap")}
    for name, template in pod_specs():
        for container in template["spec"]["containers"]:
            port_names = {p["name"] for p in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                action = container.get(probe, {})
                for kind in ("httpGet", "tcpSocket"):
                    if kind in action and isinstance(action[kind]["port"], str):
                        assert action[kind]["port"] in port_names, f"{name}: {probe} port"
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps
                if "secretRef" in source:  # no secret is applied by default: must be optional
                    assert source["secretRef"].get("optional") is True


def test_worker_requests_a_gpu_and_has_time_to_drain() -> None:
    worker = one("Deployment", "srserve-worker")
    assert "replicas" not in worker["spec"], "KEDA owns the replica count"
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    # A worker being scaled down or evicted finishes the jobs it holds: each may run job_timeout_s.
    from worker.settings import WorkerSettings

    timeout = int(config_data().get("SRSERVE_JOB_TIMEOUT_S", WorkerSettings.model_fields["job_timeout_s"].default))
    assert pod["terminationGracePeriodSeconds"] >= timeout + 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert one("PodDisruptionBudget", "srserve-worker")["spec"]["maxUnavailable"] == 1


def test_keda_watches_the_queue_the_workers_consume() -> None:
    scaled = one("ScaledObject", "srserve-worker")
    target = scaled["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    one("Deployment", target["name"])
    (trigger,) = scaled["spec"]["triggers"]
    data = config_data()
    assert trigger["metadata"]["listName"] == f"rq:queue:{data['SRSERVE_QUEUE_NAME']}"
    redis_url = urlparse(data["REDIS_URL"])
    host, port = trigger["metadata"]["address"].rsplit(":", 1)
    assert int(port) == (redis_url.port or 6379)
    assert host.split(".")[0] == redis_url.hostname
    assert int(trigger["metadata"].get("databaseIndex", "0")) == int(redis_url.path.strip("/") or 0)
    one("Service", redis_url.hostname)  # the in-cluster Redis the URL names exists
    assert scaled["spec"]["minReplicaCount"] >= 1  # see api.yaml: a warm worker, no cold start


def test_redis_persists_and_never_evicts() -> None:
    redis = one("StatefulSet", "srserve-redis")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def _env_of_containers() -> dict[str, dict[str, str]]:
    """container name -> the environment it gets (ConfigMap, Secret example, then `env`)."""
    secret = one("Secret", "srserve-s3")["stringData"]
    result = {}
    for _, template in pod_specs():
        for container in template["spec"]["containers"]:
            env: dict[str, str] = {}
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    env.update(one("ConfigMap", source["configMapRef"]["name"])["data"])
                if "secretRef" in source:
                    env.update(secret)
            for var in container.get("env", []):
                env[var["name"]] = var.get("value", "pod-name-from-downward-api")
            result[container["name"]] = env
    return result


def test_every_variable_is_a_setting_and_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.settings import ServiceSettings
    from worker.settings import WorkerSettings

    envs = _env_of_containers()
    for container, settings_cls in (("api", ServiceSettings), ("worker", WorkerSettings)):
        env = envs[container]
        known = settings_env_names(settings_cls) | NON_SETTINGS_ENV
        unknown = {k for k in env if re.match(r"^(SRSERVE_|REDIS_URL)", k)} - known
        assert not unknown, f"{container}: variables no setting reads: {sorted(unknown)}"
        for key in list(env):
            monkeypatch.setenv(key, env[key])
        settings = settings_cls()  # raises on a value the settings class refuses
        assert settings.blob_backend == "s3"
        assert str(settings.redis_url) == env["REDIS_URL"]
        for key in env:
            monkeypatch.delenv(key)


def test_images_match_the_compose_build() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    images = {c["name"]: c["image"] for _, t in pod_specs() for c in t["spec"]["containers"]}
    assert images["api"] == compose["api"]["image"]
    assert images["worker"] == compose["worker"]["image"]
    # the commands are the ones the compose test runs for real
    commands = {c["name"]: c["command"] for _, t in pod_specs() for c in t["spec"]["containers"] if "command" in c}
    assert commands["api"] == compose["api"]["command"]
    assert commands["worker"] == compose["worker"]["command"]
