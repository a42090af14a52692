"""The GitHub workflows parse, every `make` target they call exists, and they do what CI/CD
promises: lint and pre-commit, the tests, the manifests, the containers and the compose smoke
test on every change; the images pushed to a registry only on a `v*` tag."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from rental.settings import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
CI_TARGETS = {"lint", "test", "k8s-validate", "container", "compose-smoke"}
SHELL_OPERATORS = {"&&", "||", ";", "|", "&", ")", "then", "do"}


def make_targets(makefile: str) -> set[str]:
    """Targets of rules (``name: prerequisites``); assignments (``:=``) are not rules."""
    targets = set()
    for line in makefile.splitlines():
        match = re.match(r"^([^\s:=#][^:=#]*?)\s*:(?![=:])", line)
        if match:
            targets.update(match.group(1).split())
    return targets - {".PHONY"}


def make_calls(script: str) -> list[str]:
    """The targets each `make` command in a run script names (variables and options skipped)."""
    called = []
    for line in script.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split()
        for i, word in enumerate(words):
            if word != "make":
                continue
            for arg in words[i + 1 :]:
                if arg in SHELL_OPERATORS:
                    break
                if not arg.startswith("-") and "=" not in arg:
                    called.append(arg)
    return called


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path.name}: not a mapping"
    if True in doc:  # YAML 1.1 reads the key `on` as a boolean
        doc["on"] = doc.pop(True)
    return doc


def steps(doc: dict) -> list[tuple[str, dict]]:
    return [(job, step) for job, spec in doc.get("jobs", {}).items() for step in spec.get("steps", [])]


def problems(doc: dict, targets: set[str]) -> list[str]:
    found = [f"no {key}" for key in ("name", "on", "jobs") if not doc.get(key)]
    jobs = doc.get("jobs") or {}
    for job, spec in jobs.items():
        if not spec.get("runs-on"):
            found.append(f"{job}: no runs-on")
        if not spec.get("steps"):
            found.append(f"{job}: no steps")
        needs = spec.get("needs", [])
        found += [
            f"{job}: needs unknown job {need}"
            for need in ([needs] if isinstance(needs, str) else needs)
            if need not in jobs
        ]
    for job, step in steps(doc):
        if ("uses" in step) == ("run" in step):
            found.append(f"{job}: a step needs exactly one of uses and run: {step}")
        found += [
            f"{job}: make {target}: no such target in the Makefile"
            for target in make_calls(step.get("run", ""))
            if target not in targets
        ]
    return found


@pytest.fixture(scope="module")
def targets() -> set[str]:
    return make_targets((REPO_ROOT / "Makefile").read_text())


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict]:
    paths = sorted(WORKFLOWS.glob("*.y*ml"))
    assert paths, "no workflow in .github/workflows"
    return {path.name: load(path) for path in paths}


def test_every_workflow_parses_and_calls_only_real_targets(workflows, targets):
    for name, doc in workflows.items():
        assert problems(doc, targets) == [], name


def test_ci_runs_lint_pre_commit_tests_manifests_containers_and_the_smoke_test(workflows):
    ci = workflows["ci.yml"]
    assert set(ci["on"]) == {"push", "pull_request"}
    runs = [step.get("run", "") for _, step in steps(ci)]
    assert {target for run in runs for target in make_calls(run)} >= CI_TARGETS
    assert any("pre-commit run --all-files" in run for run in runs)


def test_images_are_pushed_only_on_version_tags(workflows):
    release = workflows["release.yml"]
    assert release["on"] == {"push": {"tags": ["v*"]}}
    pushing = [
        job
        for job, spec in release["jobs"].items()
        if any("docker push" in step.get("run", "") for step in spec["steps"])
    ]
    assert pushing, "no job pushes the images"
    for job in pushing:
        spec = release["jobs"][job]
        assert spec["permissions"]["packages"] == "write"
        uses = [step.get("uses", "") for step in spec["steps"]]
        login = next(i for i, use in enumerate(uses) if use.startswith("docker/login-action@"))
        runs = [step.get("run", "") for step in spec["steps"]]
        assert "container" in {target for run in runs[:login] for target in make_calls(run)}
        assert all("docker push" not in run for run in runs[:login]), "a push before the login"
    for name, doc in workflows.items():
        if name != "release.yml":
            assert all("docker push" not in step.get("run", "") for _, step in steps(doc)), name


def test_the_checks_fail_on_broken_workflows(targets):
    assert make_targets("a := 1\nb ::= 2\nx y: a\n\tmake z\n.PHONY: x\n$(V)/.f: g\n") == {"x", "y", "$(V)/.f"}
    assert make_calls("make -j2 lint test PYTEST_ARGS=-x && make container # make not-this\ncd x; make\n") == [
        "lint",
        "test",
        "container",
    ]
    broken = {
        "name": "ci",
        "on": {"push": None},
        "jobs": {
            "a": {"runs-on": "ubuntu-24.04", "needs": ["b"], "steps": [{"run": "make lint no-such-target"}]},
            "c": {"steps": [{"uses": "actions/checkout@v4", "run": "true"}]},
        },
    }
    assert problems(broken, targets) == [
        "a: needs unknown job b",
        "c: no runs-on",
        "a: make no-such-target: no such target in the Makefile",
        "c: a step needs exactly one of uses and run: {'uses': 'actions/checkout@v4', 'run': 'true'}",
    ]
    assert problems({"jobs": {}}, targets) == ["no name", "no on", "no jobs"]
