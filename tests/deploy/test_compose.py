"""The compose stack: its files checked without Docker (compose's own parser, promtool, the
dashboard against the metrics the code exports), and the whole stack run by `make compose-smoke`
where a Docker Engine can start."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import yaml

from deploy.compose.build_images import PROJECT_IMAGES, compose_images, stand_in_for
from monitoring.views.metrics import registry_for
from rental.settings import REPO_ROOT, Settings

COMPOSE = REPO_ROOT / "docker-compose.yml"
COMPOSE_DIR = REPO_ROOT / "deploy" / "compose"
PROMETHEUS_CONFIG = COMPOSE_DIR / "prometheus" / "prometheus.yml"
DASHBOARDS = COMPOSE_DIR / "grafana" / "dashboards"
SECRETS = {"REDIS_PASSWORD": "p", "RENTAL_SERVE_API_TOKENS": "t", "GRAFANA_ADMIN_PASSWORD": "g"}
NO_STAND_IN = {"grafana/grafana"}  # not in Debian; its source is not built here


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def compose_commands() -> list[list[str]]:
    found = []
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        found.append(["docker", "compose"])
    return found


@pytest.mark.parametrize("command", compose_commands() or [None], ids=lambda c: " ".join(c) if c else "none")
def test_compose_parses_with_the_installed_compose_and_refuses_without_secrets(command, tmp_path):
    if command is None:
        pytest.skip("neither docker-compose (Debian's 1.29) nor `docker compose` is installed: make compose-images")
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)}
    ok = subprocess.run([*command, "-f", str(COMPOSE), "config", "-q"], env=env | SECRETS, capture_output=True,
                        text=True, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run([*command, "-f", str(COMPOSE), "config", "-q"], env=env, capture_output=True,
                             text=True, check=False)  # fmt: skip
    assert refused.returncode != 0 and "REDIS_PASSWORD" in refused.stderr


def test_compose_has_no_top_level_name_which_docker_compose_1_rejects():
    assert "name" not in yaml.safe_load(COMPOSE.read_text())


def test_stateful_services_have_healthchecks_and_named_volumes():
    compose = yaml.safe_load(COMPOSE.read_text())
    declared = set(compose["volumes"])
    for name in ("kafka", "redis", "mlflow", "pricing", "prefect", "prometheus", "grafana", "monitor-check"):
        assert "healthcheck" in compose["services"][name], name
    for name in ("kafka", "redis", "mlflow", "prefect", "prometheus", "grafana", "monitor", "features", "init"):
        named = {v.split(":")[0] for v in compose["services"][name]["volumes"] if not v.startswith(".")}
        assert named and named <= declared, name
    # MLflow: its backend and its artifacts each on a volume; the monitor's log on its own.
    mlflow = compose["services"]["mlflow"]
    assert {"mlflow-backend:/mlflow/backend", "mlflow-artifacts:/mlflow/artifacts"} <= set(mlflow["volumes"])
    assert "sqlite:////mlflow/backend/mlflow.db" in mlflow["entrypoint"]
    assert compose["services"]["monitor"]["environment"]["RENTAL_MONITOR_DIR"] == "/monitoring"


def test_the_first_training_runs_the_demo_sequence_before_the_service_and_the_consumers():
    compose = services()
    script = compose["init"]["command"][0]
    steps = re.findall(r"^rental (.+?)(?: --.*)?$", script, re.M)
    assert steps == ["simulate history", "catalogue publish", "features backfill", "features apply",
                     "features materialize", "train"]  # fmt: skip
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", (REPO_ROOT / "Makefile").read_text(), re.M).group(1)
    commands = re.findall(r"^\t(?:\w+=\S+ )*\$\(RENTAL\) ([^#\n]+)", recipe, re.M)  # settings before it, comments after
    demo = [re.sub(r" --.*", "", line).strip() for line in commands]
    assert [s for s in demo if s in steps] == steps  # the order of `make demo`
    for name in ("pricing", "features", "simulator", "monitor-check", "flows"):
        assert compose[name]["depends_on"]["init"]["condition"] == "service_completed_successfully", name


def _published(spec: str) -> tuple[str, str, int]:
    address, host, container = re.fullmatch(r"([^:]+):(\$\{[^}]+\}|\d+):(\d+)", spec).groups()
    return address, host, int(container)


def test_every_port_is_published_on_loopback_on_ports_beside_the_local_services():
    compose, defaults = services(), Settings()
    published = {name: [_published(p) for p in s.get("ports", [])] for name, s in compose.items()}
    host_ports = {}
    for name, ports in published.items():
        for address, host, _ in ports:
            assert address == "127.0.0.1", f"{name} publishes on {address}"
            variable, default = re.fullmatch(r"\$\{(RENTAL_COMPOSE_\w+_PORT):-(\d+)\}", host).groups()
            host_ports[variable] = int(default)
    assert len(set(host_ports.values())) == len(host_ports)
    assert not set(host_ports.values()) & {defaults.kafka_port, defaults.redis_port, defaults.serve_http_port,
                                           defaults.serve_grpc_port, 5000, 4200, 9090}  # fmt: skip
    assert {c for _, _, c in published["pricing"]} == {defaults.serve_http_port, defaults.serve_grpc_port}
    env = compose["pricing"]["environment"]
    assert {int(env["RENTAL_SERVE_HTTP_PORT"]), int(env["RENTAL_SERVE_GRPC_PORT"])} == {3000, 50051}
    # A host client's metadata must point back at the published port.
    kafka = compose["kafka"]
    assert "HOST://127.0.0.1:${RENTAL_COMPOSE_KAFKA_PORT:-19092}" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka["ports"] == ["127.0.0.1:${RENTAL_COMPOSE_KAFKA_PORT:-19092}:9092"]


def test_compose_redis_needs_a_password_that_every_client_of_it_carries():
    compose = services()
    redis = compose["redis"]
    command = redis["command"]
    password = command[command.index("--requirepass") + 1]
    assert password.startswith("${REDIS_PASSWORD:?")  # no default: compose refuses to start without one
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")  # the healthcheck logs in
    urls = {name: (s.get("environment") or {}).get("REDIS_URL") for name, s in compose.items()}
    clients = {name: url for name, url in urls.items() if url}
    assert {"pricing", "features", "init", "monitor", "flows"} <= set(clients)
    for name, url in clients.items():
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD(:\?[^}]*)?\}@redis:6379/\d+", url), f"{name}: {url}"


def test_compose_serves_on_all_interfaces_of_the_container_only_with_tokens():
    env = services()["pricing"]["environment"]
    assert env["RENTAL_SERVE_HOST"] == "0.0.0.0"
    assert env["RENTAL_SERVE_API_TOKENS"].startswith("${RENTAL_SERVE_API_TOKENS:?")
    assert services()["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_every_upstream_image_has_a_local_stand_in_on_the_debian_base():
    for image in compose_images():
        if image in PROJECT_IMAGES:
            continue
        folder = stand_in_for(image)
        if image.rsplit(":", 1)[0] in NO_STAND_IN:
            assert folder is None
            continue
        assert folder is not None, image
        dockerfile = (folder / "Dockerfile").read_text()
        assert "ARG BASE=rental/debian:bookworm" in dockerfile and "FROM ${BASE}" in dockerfile, image
    assert "apache/kafka:" + Settings().kafka_version in compose_images()  # the jars the stand-in is built from


@pytest.fixture
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian's prometheus package: make compose-images)")
    return found


def test_the_prometheus_config_is_valid_and_scrapes_the_service_and_the_monitor(promtool, tmp_path):
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    token = tmp_path / "pricing.token"
    token.write_text("t")  # the file the container writes from RENTAL_SERVE_API_TOKENS
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["pricing"]["authorization"]["credentials_file"] == "/tmp/pricing.token"
    assert "/tmp/pricing.token" in services()["prometheus"]["command"][0]
    jobs["pricing"]["authorization"]["credentials_file"] = str(token)
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    done = subprocess.run([promtool, "check", "config", str(checked)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    targets = {name: job["static_configs"][0]["targets"] for name, job in jobs.items()}
    assert targets["pricing"] == ["pricing:3000"]
    assert targets["monitor"] == [f"monitor-check:{Settings().monitor_metrics_port}"]
    assert "--serve-metrics" in services()["monitor-check"]["entrypoint"][-1]
    assert services()["monitor-check"]["environment"]["RENTAL_MONITOR_METRICS_HOST"] == "0.0.0.0"
    assert services()["pricing"]["environment"]["RENTAL_SERVE_HTTP_METRICS"] == "true"


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((DASHBOARDS / "rental-pricing.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _exported_metric_names() -> set[str]:
    """What the monitor serves for a checked window, and what BentoML's HTTP metrics are named."""
    figures = {"drift_share": 0.1, "prediction_drift": 0.1, "mae": 1.0, "mape": 0.1, "bias": 0.0, "booking_rate": 0.1,
               "degraded_share": 0.0, "feature_age_p95_s": 10.0, "dlq_rate": 0.0}  # fmt: skip
    window = {"figures": figures, "model_version": "1", "status": "ok", "window_end": datetime.now(UTC).isoformat()}
    registry = registry_for([window], 0, datetime.now(UTC))
    names = {metric.name for metric in registry.collect()}
    service = (REPO_ROOT / "bento_service" / "service.py").read_text()
    namespace = re.search(r'metrics=\{"enabled": [^,]+, "namespace": "(\w+)"\}', service).group(1)
    names |= {f"{namespace}_request_duration_seconds_bucket", f"{namespace}_request_total", "up"}
    return names


def test_the_dashboard_shows_latency_freshness_and_drift_from_metrics_the_code_exports(promtool, tmp_path):
    queries = _dashboard_queries()
    used = {name for q in queries for name in re.findall(r"\b(up|bentoml_\w+|rental_\w+)\b", q)}
    assert used <= _exported_metric_names(), used - _exported_metric_names()
    assert any("request_duration_seconds_bucket" in q for q in queries)  # quote latency
    assert {"rental_monitor_feature_age_p95_seconds", "rental_monitor_drift_share"} <= used  # freshness, drift
    # Each query is valid PromQL: promtool parses it as a recording rule (Grafana's interval macro filled in).
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": q.replace("$__rate_interval", "5m")} for i, q in enumerate(queries)
    ]}]}  # fmt: skip
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_provisions_the_prometheus_source_and_the_dashboards_folder():
    provisioning = COMPOSE_DIR / "grafana" / "provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert source["url"] == "http://prometheus:9090"
    dashboard = json.loads((DASHBOARDS / "rental-pricing.json").read_text())
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {source["uid"]}
    provider = yaml.safe_load((provisioning / "dashboards" / "rental.yml").read_text())["providers"][0]
    mounts = services()["grafana"]["volumes"]
    assert f"./deploy/compose/grafana/dashboards:{provider['options']['path']}:ro" in mounts


@pytest.mark.integration
@pytest.mark.docker
@pytest.mark.timeout(3600)
def test_compose_smoke_follows_a_booking_through_the_stack(docker_engine):
    if not compose_commands():
        pytest.skip("neither docker-compose nor `docker compose` is installed: make compose-images")
    done = subprocess.run([sys.executable, str(COMPOSE_DIR / "smoke.py")], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=3500, check=False)  # fmt: skip
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-4000:]
    result = json.loads(lines[-1])
    assert done.returncode == 0 and result["ok"], done.stderr[-6000:]
    seen = result["seen"]
    assert seen["features_after"] != seen["features_before"]
    assert seen["quote_after"]["features_as_of"] != seen["quote_before"]["features_as_of"] or (
        seen["quote_after"]["price_per_day"] != seen["quote_before"]["price_per_day"]
    )
    assert seen["grpc_price_per_day"] is not None
    assert sorted(seen["monitor"]["logged"]) == sorted(
        [seen["quote_before"]["request_id"], seen["quote_after"]["request_id"]]
    )
    assert seen["prometheus"]["up"] == {"pricing": "1", "monitor": "1"}
    assert "down_s" in result["steps"]
