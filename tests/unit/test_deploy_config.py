"""Deployment files agree with the settings the code runs on."""

import re

import yaml

from rental.settings import REPO_ROOT, Settings


def test_compose_creates_the_topics_the_settings_define():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    script = compose["services"]["kafka-topics"]["command"][0]
    created = {name: (int(p), int(r)) for name, p, r in re.findall(r"^\s*create (\S+) (\d+) (\d+)$", script, re.M)}
    assert created == Settings().topic_specs()


def test_compose_services_have_healthchecks_and_volumes():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    for name in ("kafka", "redis"):
        assert "healthcheck" in compose["services"][name]
        assert compose["services"][name]["volumes"]
