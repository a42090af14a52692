"""Docker for the deployment tests: a Docker Engine (deploy/docker/engine.sh starts Debian's
dockerd when none answers) and the project's images (deploy/docker/build_images.py builds them
only when their inputs changed, so a session with current images builds nothing). Tests marked
``docker`` skip, saying why, where no engine can start."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from rental.settings import REPO_ROOT

DOCKER = REPO_ROOT / "deploy" / "docker"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "docker: needs a Docker Engine (started by deploy/docker/engine.sh)")


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker command: `make docker-deps` installs Debian's docker.io")
    started = subprocess.run([DOCKER / "engine.sh"], capture_output=True, text=True, timeout=180, check=False)
    if started.returncode != 0:
        pytest.skip(f"no Docker Engine could start: {(started.stderr or started.stdout).strip()[-1500:]}")


@pytest.fixture(autouse=True)
def _docker_marked(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("docker") is not None:
        request.getfixturevalue("docker_engine")


@pytest.fixture(scope="session")
def images(docker_engine) -> None:
    """rental-pricing:latest and rental-app:latest, current with the working tree."""
    built = subprocess.run([sys.executable, DOCKER / "build_images.py"], cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=3600, check=False)  # fmt: skip
    assert built.returncode == 0, f"{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
