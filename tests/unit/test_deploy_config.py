"""Deployment files agree with the settings the code runs on."""

import re
import shutil
import subprocess

import pytest
import yaml

from rental.servers.topics import project_topics
from rental.settings import REPO_ROOT, Settings


def test_compose_creates_the_topics_the_settings_define():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    script = compose["services"]["kafka-topics"]["command"][0]
    created = {name: (int(p), int(r)) for name, p, r in re.findall(r"^\s*create (\S+) (\d+) (\d+)$", script, re.M)}
    compacted = {name: (int(p), -1) for name, p in re.findall(r"^\s*compacted (\S+) (\d+)$", script, re.M)}
    specs, wanted_compacted = project_topics(Settings())
    assert created | compacted == specs
    assert set(compacted) == wanted_compacted


def test_compose_services_have_healthchecks_and_volumes():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    for name in ("kafka", "redis"):
        assert "healthcheck" in compose["services"][name]
        assert compose["services"][name]["volumes"]


def test_compose_runs_the_pricing_service_on_the_settings_ports_after_its_dependencies():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    pricing, defaults = compose["services"]["pricing"], Settings()
    ports = {_published(p)[2] for p in pricing["ports"]}
    assert ports == {defaults.serve_http_port, defaults.serve_grpc_port}
    env = pricing["environment"]
    assert {int(env["RENTAL_SERVE_HTTP_PORT"]), int(env["RENTAL_SERVE_GRPC_PORT"])} == ports
    assert env["REDIS_URL"].startswith("redis://:") and env["KAFKA_BOOTSTRAP_SERVERS"].startswith("kafka:")
    assert pricing["depends_on"]["redis"]["condition"] == "service_healthy"
    assert pricing["depends_on"]["kafka-topics"]["condition"] == "service_completed_successfully"
    assert "/readyz" in " ".join(pricing["healthcheck"]["test"])


def _published(spec: str) -> tuple[str, int, int]:
    """A compose port mapping as (host address, host port, container port); no address is all of them."""
    parts = spec.split(":")
    address = parts[0] if len(parts) == 3 else "0.0.0.0"
    return address, int(parts[-2]), int(parts[-1])


def test_compose_publishes_every_port_on_loopback_only():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    published = {
        name: [_published(p) for p in service.get("ports", [])] for name, service in compose["services"].items()
    }
    assert published["kafka"] and published["redis"] and published["pricing"]
    for name, ports in published.items():
        for address, host_port, container_port in ports:
            assert address == "127.0.0.1", f"{name} publishes {host_port} on {address}"
            assert host_port == container_port


def test_compose_redis_needs_a_password_that_every_client_of_it_carries():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    redis = compose["services"]["redis"]
    command = redis["command"]
    password = command[command.index("--requirepass") + 1]
    assert password.startswith("${REDIS_PASSWORD:?")  # no default: compose refuses to start without one
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")  # the healthcheck logs in
    urls = {name: (s.get("environment") or {}).get("REDIS_URL") for name, s in compose["services"].items()}
    clients = {name: url for name, url in urls.items() if url}
    assert "pricing" in clients
    for name, url in clients.items():
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD(:\?[^}]*)?\}@redis:6379/\d+", url), f"{name}: {url}"


def test_compose_serves_on_all_interfaces_of_the_container_only_with_tokens():
    env = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]["pricing"]["environment"]
    assert env["RENTAL_SERVE_HOST"] == "0.0.0.0"
    assert env["RENTAL_SERVE_API_TOKENS"].startswith("${RENTAL_SERVE_API_TOKENS:?")


def test_the_bento_packs_the_service_and_the_locked_requirements():
    bentofile = yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())
    module, _, name = bentofile["service"].partition(":")
    assert (REPO_ROOT / (module.replace(".", "/") + ".py")).read_text().count(f"class {name}") == 1
    packed = {
        path.relative_to(REPO_ROOT).as_posix() for pattern in bentofile["include"] for path in REPO_ROOT.glob(pattern)
    }
    assert module.replace(".", "/") + ".py" in packed
    stale = [pattern for pattern in bentofile["include"] if not any(REPO_ROOT.glob(pattern))]
    assert stale == [], "bentofile.yaml includes paths that no longer exist"  # the build test checks the rest
    uv = [shutil.which("uv")] if shutil.which("uv") else ["python3", "-m", "uv"]  # as the Makefile runs it
    exported = subprocess.run(
        [*uv, "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project",
         "--no-header", "--no-annotate", "--format", "requirements.txt"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if exported.returncode != 0:
        pytest.skip(f"uv is not available to export uv.lock: {exported.stderr.strip()[:200]}")
    written = (REPO_ROOT / bentofile["python"]["requirements_txt"]).read_text()
    assert written == exported.stdout, "bento_service/requirements.txt is stale: run `make bento-requirements`"
