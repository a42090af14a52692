"""The built Bento holds the service and nothing else: `bentoml build` into a private BENTOML_HOME,
then the service imported from the Bento's own src/ with the repository out of sight. An import
that bentofile.yaml does not pack fails here, not in a container; a module it packs that the
service never loads fails here too. No Docker: the Bento's files are what its image would run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rental.settings import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PROJECT_PACKAGES = ("bento_service", "rental", "streaming", "training", "tests", "feature_repo")
NEVER_PACKED = ("streaming/simulator/", "streaming/consumer/", "tests/", "benchmarks/", "data/")

# Runs in a fresh `python -I` (no cwd, no PYTHONPATH). The venv installs the project in editable
# mode through a .pth file that puts the repository root on sys.path: every entry inside the
# repository but outside the venv goes, so only the Bento's src/ can supply the project.
IMPORT_FROM_BENTO = """
import importlib.util, json, sys
from pathlib import Path
src, repo, venv = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.prefix).resolve()

def hidden(entry):
    path = Path(entry or ".").resolve()
    return path == repo or (path.is_relative_to(repo) and not path.is_relative_to(venv))

sys.path[:] = [entry for entry in sys.path if not hidden(entry)]
reachable = [name for name in sys.argv[3:] if importlib.util.find_spec(name) is not None]
sys.path.insert(0, str(src))

import bento_service.service
from rental.settings import get_settings
from streaming.feature_store import FEATURE_REPO, repo_config

repo_config(get_settings())  # what the service reads at start-up besides code: feature_store.yaml
files = {name: m.__file__ for name, m in list(sys.modules.items()) if getattr(m, "__file__", None)}
print(json.dumps({"reachable": reachable, "feature_repo": str(FEATURE_REPO), "modules": files}))
"""


@pytest.fixture(scope="session")
def bento(tmp_path_factory) -> Path:
    """The Bento's folder, built once per session from the repository's bentofile.yaml."""
    home = tmp_path_factory.mktemp("bentoml-home")
    env = os.environ | {"BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    built = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    tag = next(line.split(":", 1)[1] for line in built.stdout.splitlines() if line.startswith("__tag__:"))
    name, version = tag.strip().split(":")
    return home / "bentos" / name / version


@pytest.fixture(scope="session")
def loaded(bento: Path, tmp_path_factory) -> dict:
    """What importing the service from the Bento alone loads (module name -> file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RENTAL_", "PYTHON"))} | {
        "RENTAL_DATA_DIR": str(tmp_path_factory.mktemp("bento-data")),
        "BENTOML_HOME": str(bento.parents[2]),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    run = subprocess.run(
        [sys.executable, "-I", "-c", IMPORT_FROM_BENTO, str(bento / "src"), str(REPO_ROOT), *PROJECT_PACKAGES],
        cwd=tmp_path_factory.mktemp("elsewhere"), env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def _project(modules: dict[str, str]) -> dict[str, str]:
    return {name: file for name, file in modules.items() if name.partition(".")[0] in PROJECT_PACKAGES}


def test_the_repository_is_out_of_sight_of_the_import(loaded: dict):
    assert loaded["reachable"] == [], "the project is importable without the Bento: the editable install leaks in"


def test_the_service_loads_every_project_module_from_the_bento(bento: Path, loaded: dict):
    src = (bento / "src").resolve()
    project = _project(loaded["modules"])
    assert "bento_service.service" in project
    outside = {name: file for name, file in project.items() if not Path(file).resolve().is_relative_to(src)}
    assert outside == {}
    repo_files = [
        file
        for file in loaded["modules"].values()
        if Path(file).resolve().is_relative_to(REPO_ROOT) and not Path(file).resolve().is_relative_to(src)
        and not Path(file).resolve().is_relative_to(REPO_ROOT / ".venv")
    ]  # fmt: skip
    assert repo_files == []
    assert Path(loaded["feature_repo"]).resolve() == src / "feature_repo"


def test_the_bento_packs_only_the_modules_the_service_loads(bento: Path, loaded: dict):
    src = (bento / "src").resolve()
    packed = {path.relative_to(src).as_posix() for path in src.rglob("*.py")}
    loaded_files = [Path(file).resolve() for file in _project(loaded["modules"]).values()]
    used = {file.relative_to(src).as_posix() for file in loaded_files if file.is_relative_to(src)}
    assert sorted(packed - used) == [], "packed but never imported by the service: narrow bentofile.yaml's include"


def test_the_bento_leaves_out_the_simulator_consumer_benchmarks_and_tests(bento: Path):
    packed = [path.relative_to(bento / "src").as_posix() for path in (bento / "src").rglob("*") if path.is_file()]
    assert [path for path in packed if path.startswith(NEVER_PACKED)] == []
    assert "feature_repo/feature_store.yaml" in packed
    assert "bento_service/protos/pricing.proto" in packed


def test_the_bento_keeps_the_service_and_its_pinned_requirements(bento: Path):
    bentofile = yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())
    assert yaml.safe_load((bento / "bento.yaml").read_text())["service"] == bentofile["service"]
    pinned = _pins(REPO_ROOT / bentofile["python"]["requirements_txt"])
    assert "feast==" in " ".join(pinned)
    assert _pins(bento / "env" / "python" / "requirements.txt") == pinned


def _pins(requirements: Path) -> set[str]:
    """name==version per line; BentoML rewrites the environment markers' quoting."""
    return {line.split(";")[0].strip() for line in requirements.read_text().splitlines() if line.strip()}
