"""deploy/k8s, rendered by kustomize and checked offline, as CI checks it (`make k8s-validate`).

Each overlay is rendered by the real kustomize (`make k8s-deps` builds it once from its Go
module). Core resources are validated strictly (unknown fields fail) against the Kubernetes API
schemas kubernetes-validate bundles. Strimzi publishes its CRDs only inside its release bundle
and Helm chart; Maven Central's ``io.strimzi:api`` jar holds the model classes but no CRD YAML,
and the ``crd-generator`` that writes them from those classes is not published there. So the
Strimzi resources are validated against the minimal schema below: the fields these manifests
use, with Strimzi's types and allowed values, and no other field.

Then the rules that tie the manifests to the code: each setting is a real one of
rental/settings.py, credentials come from Secrets by reference, the topics are the project's,
a stage never has more replicas than its topic has partitions, the service's probes and ports
are the ones it serves. Every check is also run on a deliberately broken copy, where it must fail.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from bento_service.auth import OPEN_HTTP
from rental.servers.topics import project_topics
from rental.settings import REPO_ROOT, Settings

K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("local", "production")
KUBERNETES_VERSION = "1.34.0"
STRIMZI_GROUP = "kafka.strimzi.io"
SETTINGS_CONFIGMAP = "rental-settings"
# BentoML's own probe routes; the service's bearer-token middleware leaves them open (OPEN_HTTP).
BENTOML_PROBES = {"readinessProbe": "/readyz", "livenessProbe": "/livez", "startupProbe": "/livez"}

Resource = dict[str, Any]


# ---------------------------------------------------------------------------- rendering


@functools.cache
def kustomize() -> str:
    """Where `make k8s-deps` put it (the settings' cache dir), or $KUSTOMIZE."""
    version = (K8S / "kustomize-version").read_text().strip()
    cache = Path(os.environ.get("RENTAL_CACHE_DIR") or Settings.model_fields["cache_dir"].default_factory())
    for candidate in (os.environ.get("KUSTOMIZE"), str(cache / f"kustomize-{version}" / "kustomize")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"kustomize {version} is not installed: run `make k8s-deps` (builds it with Go)")


def render(root: Path, overlay: str) -> list[Resource]:
    done = subprocess.run([kustomize(), "build", str(root / "overlays" / overlay)], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"kustomize build {overlay}: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Resource]]:
    return {overlay: render(K8S, overlay) for overlay in OVERLAYS}


def named(resource: Resource) -> str:
    return f"{resource['kind']}/{resource['metadata']['name']}"


def of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def one(resources: list[Resource], kind: str, name: str) -> Resource:
    found = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def pod_specs(resources: list[Resource]) -> list[tuple[Resource, dict]]:
    found = []
    for r in resources:
        if r["kind"] in ("Deployment", "StatefulSet"):
            found.append((r, r["spec"]["template"]["spec"]))
        elif r["kind"] == "CronJob":
            found.append((r, r["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return found


def containers(resources: list[Resource]) -> list[tuple[Resource, dict]]:
    return [(r, c) for r, spec in pod_specs(resources) for c in spec.get("initContainers", []) + spec["containers"]]


# ---------------------------------------------------------------------------- schemas

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_CLUSTER_LABEL = {
    "type": "object",
    "required": ["strimzi.io/cluster"],
    "additionalProperties": {"type": "string"},
}
_QUANTITY = {"anyOf": [{"type": "string", "pattern": r"^[0-9.]+(m|Ki|Mi|Gi|Ti)?$"}, {"type": "integer"}]}
_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        part: {"type": "object", "additionalProperties": False, "properties": {"cpu": _QUANTITY, "memory": _QUANTITY}}
        for part in ("requests", "limits")
    },
}
_CONFIG = {"type": "object", "additionalProperties": {"type": ["string", "integer", "boolean", "number"]}}


def _object(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


def _strimzi(kind: str, spec: dict, cluster_label: bool = True) -> dict:
    metadata = {
        "name": _NAME,
        "namespace": _NAME,
        "annotations": _STRINGS,
        "labels": _CLUSTER_LABEL if cluster_label else _STRINGS,
    }
    return _object(
        {
            "apiVersion": {"const": f"{STRIMZI_GROUP}/v1beta2"},
            "kind": {"const": kind},
            "metadata": _object(metadata, ("name",)),
            "spec": spec,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


_LISTENER = _object(
    {
        "name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
        "port": {"type": "integer", "minimum": 9092},
        "type": {"enum": ["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]},
        "tls": {"type": "boolean"},
        "authentication": _object({"type": {"enum": ["tls", "scram-sha-512", "oauth", "custom"]}}, ("type",)),
    },
    ("name", "port", "type", "tls"),
)
_VOLUME = _object(
    {
        "id": {"type": "integer", "minimum": 0},
        "type": {"enum": ["persistent-claim", "ephemeral"]},
        "size": {"type": "string", "pattern": r"^[0-9]+(Ki|Mi|Gi|Ti)$"},
        "class": {"type": "string"},
        "kraftMetadata": {"enum": ["shared"]},
        "deleteClaim": {"type": "boolean"},
    },
    ("id", "type"),
)
# Strimzi v1beta2, the fields used here (https://strimzi.io/docs/operators/latest/configuring).
STRIMZI_SCHEMAS = {
    "Kafka": _strimzi(
        "Kafka",
        _object(
            {
                "kafka": _object(
                    {
                        "version": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+$"},
                        "metadataVersion": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+-IV[0-9]+$"},
                        "listeners": {"type": "array", "minItems": 1, "items": _LISTENER},
                        "config": _CONFIG,
                        "resources": _RESOURCES,
                    },
                    ("listeners",),
                ),
                "entityOperator": _object(
                    {
                        "topicOperator": _object({"resources": _RESOURCES}),
                        "userOperator": _object({"resources": _RESOURCES}),
                    }
                ),
            },
            ("kafka",),
        ),
        cluster_label=False,
    ),
    "KafkaNodePool": _strimzi(
        "KafkaNodePool",
        _object(
            {
                "replicas": {"type": "integer", "minimum": 0},
                "roles": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"enum": ["controller", "broker"]},
                },
                "storage": _object(
                    {"type": {"enum": ["jbod"]}, "volumes": {"type": "array", "minItems": 1, "items": _VOLUME}},
                    ("type", "volumes"),
                ),
                "resources": _RESOURCES,
            },
            ("replicas", "roles", "storage"),
        ),
    ),
    "KafkaTopic": _strimzi(
        "KafkaTopic",
        _object(
            {
                "topicName": {"type": "string", "pattern": r"^[a-zA-Z0-9._-]{1,249}$"},
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": _CONFIG,
            },
            ("partitions", "replicas"),
        ),
    ),
    "KafkaUser": _strimzi(
        "KafkaUser",
        _object(
            {"authentication": _object({"type": {"enum": ["tls", "tls-external", "scram-sha-512"]}}, ("type",))},
            ("authentication",),
        ),
    ),
}


def schema_problems(resources: list[Resource]) -> list[str]:
    problems = []
    for r in resources:
        if r["apiVersion"].split("/")[0] == STRIMZI_GROUP:
            schema = STRIMZI_SCHEMAS.get(r["kind"])
            if schema is None:
                problems.append(f"{named(r)}: no schema for this Strimzi kind")
                continue
            problems += [
                f"{named(r)}: {e.json_path}: {e.message}"
                for e in jsonschema.Draft202012Validator(schema).iter_errors(r)
            ]
            continue
        try:
            kubernetes_validate.validate(r, KUBERNETES_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            problems.append(f"{named(r)}: {getattr(exc, 'message', exc)}")
    return problems


# ---------------------------------------------------------------------------- settings and secrets


def setting_names() -> dict[str, str]:
    """Environment variable -> field of Settings, as pydantic-settings reads them."""
    names = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else None
        names[(alias or f"RENTAL_{field}").upper()] = field
    return names


def credential_settings() -> tuple[set[str], set[str]]:
    """Variables that are credentials (SecretStr fields), and URLs kept out of reprs because they
    may carry a password (REDIS_URL, MLFLOW_TRACKING_URI): those only with a password inside."""
    secrets, urls = set(), set()
    for env, field in setting_names().items():
        info = Settings.model_fields[field]
        if "SecretStr" in str(info.annotation):
            secrets.add(env)
        elif info.repr is False:
            urls.add(env)
    return secrets, urls


def is_credential(name: str, value: str) -> bool:
    secrets, urls = credential_settings()
    return name.upper() in secrets or (name.upper() in urls and urlsplit(value).password is not None)


def settings_data(resources: list[Resource]) -> dict[str, str]:
    return one(resources, "ConfigMap", SETTINGS_CONFIGMAP)["data"]


def settings_from(resources: list[Resource], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings the processes build from the ConfigMap (nothing else from this environment)."""
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in settings_data(resources).items():
        monkeypatch.setenv(name, value)
    return Settings()


def settings_problems(resources: list[Resource], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    known = setting_names()
    problems = [
        f"ConfigMap {SETTINGS_CONFIGMAP}: {name} is not a setting of rental/settings.py"
        for name in settings_data(resources)
        if name.upper() not in known
    ]
    for r, c in containers(resources):
        for env in c.get("env", []):
            name = env["name"]
            if name.upper().startswith("RENTAL_") and name.upper() not in known:
                problems.append(f"{named(r)} {c['name']}: {name} is not a setting of rental/settings.py")
        for source in c.get("envFrom", []):
            ref = source.get("configMapRef", {}).get("name")
            if ref is not None and ref != SETTINGS_CONFIGMAP:
                problems.append(f"{named(r)} {c['name']}: envFrom names ConfigMap {ref}, not {SETTINGS_CONFIGMAP}")
    try:
        settings_from(resources, monkeypatch)
    except ValidationError as exc:
        problems.append(f"ConfigMap {SETTINGS_CONFIGMAP}: the settings refuse it: {exc}")
    return problems


def committed_secrets(root: Path) -> list[str]:
    """Secret manifests with values, anywhere under the folder (listed by a kustomization or not)."""
    found = []
    for path in sorted(root.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
                found.append(f"{path.relative_to(root)}: Secret {doc.get('metadata', {}).get('name')} has values")
    return found


def secret_problems(resources: list[Resource], root: Path) -> list[str]:
    problems = committed_secrets(root)
    problems += [
        f"{named(r)}: rendered with values"
        for r in of_kind(resources, "Secret")
        if r.get("data") or r.get("stringData")
    ]
    for cm in of_kind(resources, "ConfigMap"):
        problems += [
            f"{named(cm)}: {name} is a credential; reference a Secret instead"
            for name, value in cm.get("data", {}).items()
            if is_credential(name, value)
        ]
    for r, c in containers(resources):
        for env in c.get("env", []):
            if "value" in env and is_credential(env["name"], env["value"]):
                problems.append(f"{named(r)} {c['name']}: {env['name']} is inlined; use valueFrom.secretKeyRef")
    return problems


# ---------------------------------------------------------------------------- topics and consumers


def topic_problems(resources: list[Resource], settings: Settings) -> list[str]:
    specs, compacted = project_topics(settings)
    wanted = {
        name: (partitions, str(retention), "compact" if name in compacted else "delete")
        for name, (partitions, retention) in specs.items()
    }
    topics = of_kind(resources, "KafkaTopic")
    found = {
        t["spec"].get("topicName", t["metadata"]["name"]): (
            t["spec"]["partitions"],
            str(t["spec"].get("config", {}).get("retention.ms")),
            t["spec"].get("config", {}).get("cleanup.policy", "delete"),
        )
        for t in topics
    }
    problems = [
        f"topic {name}: manifests have {found.get(name)}, settings say {spec} (partitions, retention.ms, "
        f"cleanup.policy)"
        for name, spec in wanted.items()
        if found.get(name) != spec
    ]
    problems += [f"topic {name}: not a topic of the project" for name in found if name not in wanted]
    clusters = {k["metadata"]["name"] for k in of_kind(resources, "Kafka")}
    brokers = sum(p["spec"]["replicas"] for p in of_kind(resources, "KafkaNodePool") if "broker" in p["spec"]["roles"])
    for t in topics:
        replicas, min_isr = t["spec"]["replicas"], int(t["spec"].get("config", {}).get("min.insync.replicas", 1))
        if t["metadata"].get("labels", {}).get("strimzi.io/cluster") not in clusters:
            problems.append(f"{named(t)}: its strimzi.io/cluster label names no Kafka in the manifests")
        if replicas > brokers:
            problems.append(f"{named(t)}: {replicas} replicas on {brokers} brokers")
        if min_isr > replicas or (replicas > 1 and min_isr >= replicas):
            problems.append(f"{named(t)}: min.insync.replicas {min_isr} with {replicas} replicas")
    return problems


def stage_topics(settings: Settings) -> dict[str, str]:
    """Each stage's input topic, as streaming/consumer/stages.py assigns them (importing it
    would load Feast and the kernels, about 15 s)."""
    return {
        "items": settings.topic_bookings,
        "customers": settings.topic_bookings_by_customer,
        "categories": settings.topic_bookings_by_category,
    }


def consumer_problems(resources: list[Resource], settings: Settings) -> list[str]:
    partitions = {
        t["spec"].get("topicName", t["metadata"]["name"]): t["spec"]["partitions"]
        for t in of_kind(resources, "KafkaTopic")
    }
    scaled = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"]["maxReplicas"]
        for h in of_kind(resources, "HorizontalPodAutoscaler")
    }
    problems, seen = [], set()
    for r, c in containers(resources):
        command = c.get("command", []) + c.get("args", [])
        if command[:3] != ["rental", "stream", "features"]:
            continue
        if "--stages" not in command:
            problems.append(f"{named(r)}: runs every stage in one Deployment; scale stages one by one")
            continue
        for stage in command[command.index("--stages") + 1].split(","):
            seen.add(stage)
            topic = stage_topics(settings).get(stage)
            most = max(r["spec"].get("replicas", 1), scaled.get(r["metadata"]["name"], 0))
            if topic is None:
                problems.append(f"{named(r)}: no stage {stage!r}")
            elif most > partitions.get(topic, 0):
                problems.append(
                    f"{named(r)}: up to {most} replicas of stage {stage}, "
                    f"{topic} has {partitions.get(topic, 0)} partitions"
                )
    problems += [f"stage {stage} runs nowhere" for stage in stage_topics(settings) if stage not in seen]
    return problems


# ---------------------------------------------------------------------------- the pricing service


def pricing_problems(resources: list[Resource], settings: Settings) -> list[str]:
    problems = []
    deployment = one(resources, "Deployment", "pricing")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    if ports != {"http": settings.serve_http_port, "grpc": settings.serve_grpc_port}:
        problems.append(
            f"pricing ports {ports}, the settings serve http {settings.serve_http_port} "
            f"and grpc {settings.serve_grpc_port}"
        )
    for probe, path in BENTOML_PROBES.items():
        http = container.get(probe, {}).get("httpGet")
        if probe != "startupProbe" and http is None:
            problems.append(f"pricing: no HTTP {probe}")
        if http is None:
            continue
        if http["path"] != path or path not in OPEN_HTTP:
            problems.append(f"pricing {probe}: {http['path']}, the service answers probes on {path} without a token")
        if http["port"] not in ports and http["port"] not in ports.values():
            problems.append(f"pricing {probe}: port {http['port']} is not one of the container's {ports}")
    service = one(resources, "Service", "pricing")
    for port in service["spec"]["ports"]:
        if port["targetPort"] not in ports and port["targetPort"] not in ports.values():
            problems.append(f"Service/pricing: targetPort {port['targetPort']} is not one of the container's {ports}")
    hpa = one(resources, "HorizontalPodAutoscaler", "pricing")
    if hpa["apiVersion"] != "autoscaling/v2" or hpa["spec"]["scaleTargetRef"]["name"] != "pricing":
        problems.append("HorizontalPodAutoscaler/pricing: not an autoscaling/v2 autoscaler of the pricing Deployment")
    return problems


def pod_security_problems(resources: list[Resource]) -> list[str]:
    problems = []
    for r, spec in pod_specs(resources):
        if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
            problems.append(f"{named(r)}: pods not held to runAsNonRoot")
        for c in spec["containers"]:
            context = c.get("securityContext", {})
            if context.get("allowPrivilegeEscalation") is not False or context.get("capabilities", {}).get("drop") != [
                "ALL"
            ]:
                problems.append(f"{named(r)} {c['name']}: privilege escalation or capabilities not dropped")
            if "resources" not in c:
                problems.append(f"{named(r)} {c['name']}: no resources")
    return problems


# ---------------------------------------------------------------------------- the manifests as they are


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_is_valid_against_its_schema(rendered, overlay):
    resources = rendered[overlay]
    kinds = {r["kind"] for r in resources}
    assert {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "StatefulSet",
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
    } <= kinds
    assert schema_problems(resources) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_are_real_and_credentials_come_from_secrets(rendered, overlay, monkeypatch):
    assert settings_problems(rendered[overlay], monkeypatch) == []
    assert secret_problems(rendered[overlay], K8S) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_consumers_and_the_service_agree_with_the_code(rendered, overlay, monkeypatch):
    resources = rendered[overlay]
    settings = settings_from(resources, monkeypatch)
    assert topic_problems(resources, settings) == []
    assert consumer_problems(resources, settings) == []
    assert pricing_problems(resources, settings) == []
    assert pod_security_problems(resources) == []


def test_kafka_is_kraft_on_node_pools(rendered):
    for overlay, resources in rendered.items():
        kafka = one(resources, "Kafka", "rental-kafka")
        assert kafka["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}
        roles = {role for pool in of_kind(resources, "KafkaNodePool") for role in pool["spec"]["roles"]}
        assert roles == {"controller", "broker"}, overlay
    production = rendered["production"]
    assert (
        sum(p["spec"]["replicas"] for p in of_kind(production, "KafkaNodePool") if "broker" in p["spec"]["roles"]) >= 3
    )
    assert {t["spec"]["replicas"] for t in of_kind(production, "KafkaTopic")} == {3}


# ---------------------------------------------------------------------------- broken copies must fail

Check = Callable[[list[Resource], Path, pytest.MonkeyPatch], list[str]]


def _schemas(resources, root, monkeypatch):
    return schema_problems(resources)


def _settings(resources, root, monkeypatch):
    return settings_problems(resources, monkeypatch)


def _secrets(resources, root, monkeypatch):
    return secret_problems(resources, root)


def _topics(resources, root, monkeypatch):
    return topic_problems(resources, settings_from(resources, monkeypatch))


def _consumers(resources, root, monkeypatch):
    return consumer_problems(resources, settings_from(resources, monkeypatch))


def _pricing(resources, root, monkeypatch):
    return pricing_problems(resources, settings_from(resources, monkeypatch))


def _security(resources, root, monkeypatch):
    return pod_security_problems(resources)


BROKEN = {
    # file under deploy/k8s, text in it, its replacement, the check that must now fail on the
    # production overlay (the local one for LOCAL_ONLY), words of its message
    "unknown field in a Deployment": ("base/mlflow.yaml", "  strategy:\n", "  stratgy:\n", _schemas, "stratgy"),
    "a port as a word": ("base/pricing.yaml", "      port: 3000\n", "      port: http\n", _schemas, "Service/pricing"),
    "a utilisation as a word": (
        "base/pricing.yaml",
        "averageUtilization: 70",
        "averageUtilization: high",
        _schemas,
        "HorizontalPodAutoscaler/pricing",
    ),
    "unknown field in a KafkaTopic": (
        "base/topics.yaml",
        "  partitions: 3\n",
        "  partition: 3\n",
        _schemas,
        "partition",
    ),
    "listener name too long": ("base/kafka.yaml", "name: plain\n", "name: plaintextlistener\n", _schemas, "listeners"),
    "node pool without roles": ("base/kafka.yaml", "  roles: [controller]\n", "", _schemas, "roles"),
    "a setting that does not exist": (
        "base/settings.yaml",
        "RENTAL_SERVE_WORKERS:",
        "RENTAL_SERVE_WORKER_COUNT:",
        _settings,
        "RENTAL_SERVE_WORKER_COUNT",
    ),
    "a setting the settings refuse": (
        "base/settings.yaml",
        'RENTAL_SERVE_WORKERS: "2"',
        'RENTAL_SERVE_WORKERS: "0"',
        _settings,
        "refuse",
    ),
    "a Secret with values": (
        "base/storage.yaml",
        "apiVersion: v1\nkind: PersistentVolumeClaim",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: rental-redis\nstringData:\n  password: x\n"
        "---\napiVersion: v1\nkind: PersistentVolumeClaim",
        _secrets,
        "has values",
    ),
    "a token inlined": (
        "base/pricing.yaml",
        """            - name: RENTAL_SERVE_API_TOKENS
              valueFrom:
                secretKeyRef:
                  name: rental-serve
                  key: api-tokens""",
        """            - name: RENTAL_SERVE_API_TOKENS
              value: token""",
        _secrets,
        "inlined",
    ),
    "a Redis URL in the ConfigMap": (
        "base/settings.yaml",
        "  RENTAL_DATA_DIR: /data\n",
        "  RENTAL_DATA_DIR: /data\n  REDIS_URL: redis://:pw@redis:6379/0\n",
        _secrets,
        "credential",
    ),
    "partitions differ from the settings": (
        "base/topics.yaml",
        "  partitions: 6\n",
        "  partitions: 5\n",
        _topics,
        "topic bookings",
    ),
    "retention differs from the settings": (
        "base/topics.yaml",
        "retention.ms: 7776000000",
        "retention.ms: 1000",
        _topics,
        "bookings.dlq",
    ),
    "a compacted topic that deletes": (
        "base/topics.yaml",
        "cleanup.policy: compact",
        "cleanup.policy: delete",
        _topics,
        "topic items",
    ),
    "more replicas than brokers": (
        "base/kafka.yaml",
        "  replicas: 3\n  roles: [broker]",
        "  replicas: 2\n  roles: [broker]",
        _topics,
        "3 replicas on 2 brokers",
    ),
    "more stage replicas than partitions": (
        "overlays/local/kustomization.yaml",
        "  - name: features-customers\n    count: 1",
        "  - name: features-customers\n    count: 1\n  - name: features-categories\n    count: 4",
        _consumers,
        "categories",
    ),
    "a stage nowhere": (
        "base/features.yaml",
        "--stages, categories,",
        "--stages, customers,",
        _consumers,
        "stage categories runs nowhere",
    ),
    "a readiness probe the service does not serve": (
        "base/pricing.yaml",
        "path: /readyz",
        "path: /ready",
        _pricing,
        "readinessProbe",
    ),
    "a gRPC port the settings do not serve": (
        "base/pricing.yaml",
        "containerPort: 50051",
        "containerPort: 50052",
        _pricing,
        "grpc",
    ),
    "a pod that may run as root": (
        "base/redis.yaml",
        "        runAsNonRoot: true\n",
        "",
        _security,
        "StatefulSet/redis",
    ),
}


LOCAL_ONLY = {"more stage replicas than partitions"}  # an edit of the local overlay


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_copy_fails_its_check(case, tmp_path, monkeypatch):
    file, old, new, check, words = BROKEN[case]
    root = tmp_path / "k8s"
    shutil.copytree(K8S, root)
    path = root / file
    text = path.read_text()
    assert text.count(old) >= 1, f"{file} no longer has {old!r}: update this case"
    path.write_text(text.replace(old, new))
    problems = check(render(root, "local" if case in LOCAL_ONLY else "production"), root, monkeypatch)
    assert any(words in problem for problem in problems), problems


def test_an_unlisted_secret_file_is_found_too(tmp_path):
    root = tmp_path / "k8s"
    shutil.copytree(K8S, root)
    assert committed_secrets(root) == []
    (root / "overlays" / "production" / "redis-secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: rental-redis\ndata:\n  password: cGFzc3dvcmQ=\n"
    )
    assert committed_secrets(root) == ["overlays/production/redis-secret.yaml: Secret rental-redis has values"]


def unknown_settings_in_tables(page: str) -> set[str]:
    """Names in the first column of a Markdown table's rows that are not settings."""
    cells = [line.split("|")[1] for line in page.splitlines() if line.startswith("| `")]
    named = {name for cell in cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}
    assert named, "no setting in the page's tables"
    return named - setting_names().keys()


def test_the_scaling_page_names_only_real_settings():
    assert unknown_settings_in_tables((REPO_ROOT / "docs" / "scaling.md").read_text()) == set()
    assert unknown_settings_in_tables("| `RENTAL_KAFKA_REPLICAS`, `REDIS_URL` | 3 | no such setting |") == {
        "RENTAL_KAFKA_REPLICAS"
    }
