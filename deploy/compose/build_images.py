"""Every image docker-compose.yml names, present before `up`: kept, pulled, or built locally.

For each image of the compose file: the project's own (rental-app, rental-pricing) come from
deploy/docker/build_images.py, which rebuilds them only when their inputs changed. Any other is
kept when present, else pulled; where no registry answers, a local stand-in is built under the
same name from deploy/compose/images/<name>/Dockerfile on rental/debian:bookworm (Kafka from
Debian's Java and the project's pinned jars, Redis and Prometheus from Debian's packages). A
stand-in carries a digest of its inputs and is rebuilt when they change. An image with neither
(Grafana: not packaged for Debian) is reported missing, and `make compose-smoke` leaves its
service out.

Prints one JSON line: per image, where it came from, the build time and the size.
Run from the repository's virtualenv: `.venv/bin/python deploy/compose/build_images.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKER_DIR = REPO / "deploy" / "docker"
BASE_IMAGE = "rental/debian:bookworm"
PROJECT_IMAGES = {"rental-app:latest", "rental-pricing:latest"}
# Upstream repository -> folder of its stand-in under images/.
STAND_INS = {"apache/kafka": "kafka", "redis": "redis", "prom/prometheus": "prometheus"}
INPUTS_LABEL = "org.rental-pricing.stand-in-inputs"
BUILD_ENV = {**os.environ, "DOCKER_BUILDKIT": "0"}  # BuildKit fetches its Dockerfile frontend from a registry


def compose_images(path: Path = COMPOSE_FILE, env: dict[str, str] | None = None) -> list[str]:
    """The images the compose file runs, its ``${VAR:-default}`` names resolved as compose does."""
    services = yaml.safe_load(path.read_text())["services"]
    return sorted({resolve(service["image"], env) for service in services.values() if "image" in service})


def resolve(value: str, env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), value)


def stand_in_for(image: str) -> Path | None:
    folder = STAND_INS.get(image.rsplit(":", 1)[0])
    return HERE / "images" / folder if folder else None


def _docker(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, env=BUILD_ENV, check=check)


def label(image: str, name: str) -> str | None:
    """The image's label, '' when it has none; None when the image is absent."""
    found = _docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{name}"}}}}', image)
    return found.stdout.strip() if found.returncode == 0 else None


def size_mb(image: str) -> float | None:
    found = _docker("image", "inspect", "--format", "{{.Size}}", image)
    return round(int(found.stdout) / 1e6, 1) if found.returncode == 0 else None


def _context(image: str, folder: Path, into: Path) -> None:
    """The stand-in's build context: its folder, and for Kafka the pinned jars of `rental services`."""
    shutil.copytree(folder, into, dirs_exist_ok=True)
    if folder.name == "kafka":
        from rental.servers.kafka import fetch_jars  # a no-op once `make install` fetched them
        from rental.settings import Settings

        settings = Settings()
        wanted = image.rsplit(":", 1)[1]
        if wanted != settings.kafka_version:
            raise SystemExit(f"{image}: the compose file's Kafka is not RENTAL_KAFKA_VERSION={settings.kafka_version}")
        shutil.copytree(fetch_jars(settings), into / "libs")


def _digest(context: Path, base_id: str) -> str:
    h = hashlib.sha256(base_id.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        h.update(path.relative_to(context).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build_stand_in(image: str, folder: Path, force: bool) -> dict:
    base_id = _docker("image", "inspect", "--format", "{{.Id}}", BASE_IMAGE, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="rental-stand-in-") as tmp:
        context = Path(tmp) / "context"
        _context(image, folder, context)
        digest = _digest(context, base_id)
        if not force and label(image, INPUTS_LABEL) == digest:
            return {"source": "stand-in, current"}
        old = _docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip() or None
        started = time.monotonic()
        subprocess.run(
            ["docker", "build", "--pull=false", "--build-arg", f"BASE={BASE_IMAGE}",
             "--label", f"{INPUTS_LABEL}={digest}", "-t", image, str(context)],
            env=BUILD_ENV, check=True,
        )  # fmt: skip
        built = round(time.monotonic() - started, 1)
    if old and label(old, INPUTS_LABEL) is not None and _docker("image", "inspect", "--format",
                                                                   "{{len .RepoTags}}", old).stdout.strip() == "0":  # fmt: skip
        _docker("rmi", old)  # the stand-in this build replaced, now untagged
    return {"source": "stand-in, built", "build_s": built}


def ensure(image: str, force: bool) -> dict:
    folder = stand_in_for(image)
    present = label(image, INPUTS_LABEL)
    if present is not None and (present == "" or folder is None):
        return {"source": "present"}  # pulled earlier, or built elsewhere: kept as it is
    if present is None and _docker("pull", image).returncode == 0:
        return {"source": "pulled"}
    if folder is None:
        return {"source": "missing", "why": f"cannot pull {image} and there is no local stand-in for it"}
    return build_stand_in(image, folder, force)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild the local stand-ins even when current")
    parser.add_argument("--skip-project", action="store_true", help="leave rental-app and rental-pricing as they are")
    args = parser.parse_args()
    subprocess.run([str(DOCKER_DIR / "base_images.sh")], check=True, env=BUILD_ENV)
    images = compose_images()
    result: dict[str, dict] = {}
    if not args.skip_project and PROJECT_IMAGES & set(images):
        started = time.monotonic()
        subprocess.run([sys.executable, str(DOCKER_DIR / "build_images.py")], check=True, env=BUILD_ENV)
        took = round(time.monotonic() - started, 1)
        for image in sorted(PROJECT_IMAGES & set(images)):
            result[image] = {"source": "deploy/docker/build_images.py", "step_s": took}
    for image in images:
        if image not in PROJECT_IMAGES or args.skip_project:
            result[image] = ensure(image, args.force) if image not in PROJECT_IMAGES else {"source": "present"}
    for image, row in result.items():
        row["size_mb"] = size_mb(image)
        if row["size_mb"] is None and row["source"] != "missing":
            row |= {"source": "missing", "why": "not built"}
    print(json.dumps({"images": result}))


if __name__ == "__main__":
    main()
