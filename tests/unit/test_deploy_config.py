"""Deployment files agree with the settings the code runs on."""

import os
import shutil
import subprocess

import pytest
import yaml

from rental.servers.topics import project_topics
from rental.settings import REPO_ROOT, Settings


def test_compose_creates_the_topics_the_settings_define(monkeypatch):
    """The compose stack's topics come from the project's own code (project_topics, as `rental
    services up` creates them), run against the compose broker with no topic setting changed."""
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    topics = services["kafka-topics"]
    assert topics["entrypoint"] == ["rental", "services", "up", "kafka"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert topics["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:29092"
    assert "INTERNAL://kafka:29092" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for name in [n for n in os.environ if n.startswith("RENTAL_")]:
        monkeypatch.delenv(name)
    defaults = project_topics(Settings())
    for name, value in topics["environment"].items():
        monkeypatch.setenv(name, str(value))
    assert project_topics(Settings()) == defaults
    for name in ("init", "features", "monitor", "flows", "simulator"):  # the same settings produce and consume
        env = services[name]["environment"]
        assert not [key for key in env if key.startswith("RENTAL_TOPIC") or key.endswith("_PARTITIONS")], name
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:29092", name


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
