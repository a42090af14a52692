"""Build the project's two images when their inputs changed, and only then.

    rental-pricing:latest (+ :<bento version>)  `bentoml build` + `bentoml containerize` of bentofile.yaml
    rental-app:latest (+ :<inputs digest>)     deploy/docker/Dockerfile.app: every other process

Each image carries a label with a digest of what it was built from (the files that go in, the
locked requirements, the base image's id); an image whose label matches is current and is kept,
so tests and `make container` can run this before every use. The Docker Engine and the base
images come first (deploy/docker/base_images.sh). `--force` rebuilds both.

Run from the repository's virtualenv: `.venv/bin/python deploy/docker/build_images.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BIN = Path(sys.executable).parent
PYTHON_IMAGE = "python:3.11-slim"
PRICING_IMAGE = "rental-pricing"
APP_IMAGE = "rental-app"
INPUTS_LABEL = "org.rental-pricing.inputs"
BUILD_STAGE_LABEL = "org.rental-pricing.stage=rental-app-build"
# Not part of any process the app image runs: tests, docs, deployment files, local data.
APP_EXCLUDED = ("tests/", "docs/", "deploy/", "data/", ".github/", ".ci/", ".", "docker-compose.yml", "Makefile")
BUILD_ENV = {**os.environ, "DOCKER_BUILDKIT": "0"}  # BuildKit fetches its frontend from a registry


def run(*args: str | Path, capture: bool = False) -> str:
    out = subprocess.run(
        [str(a) for a in args],
        cwd=REPO,
        env=BUILD_ENV,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return (out.stdout or "").strip()


def image_id(ref: str) -> str | None:
    found = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def current(ref: str, digest: str) -> bool:
    found = subprocess.run(
        ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{INPUTS_LABEL}"}}}}', ref],
        capture_output=True,
        text=True,
    )
    return found.returncode == 0 and found.stdout.strip() == digest


def drop_stale(repository: str) -> None:
    """The older versions of our own image: their tags go, and so do the images (plain `docker rmi`,
    which leaves an image a container still uses). Never `docker image prune`: other builds may be
    running, and their intermediate images look just as dangling."""
    current = image_id(f"{repository}:latest")  # sha256:<64 hex>, as --no-trunc lists them
    if current is None:
        return
    listed = run("docker", "image", "ls", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", repository,
                 capture=True)  # fmt: skip
    stale = [tag for tag, image in (line.split() for line in listed.splitlines()) if image != current]
    if stale:
        subprocess.run(["docker", "rmi", *stale], capture_output=True)


def digest_of(files: list[tuple[str, Path]], *extra: str) -> str:
    h = hashlib.sha256()
    for name, path in sorted(files):
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    for value in extra:
        h.update(value.encode() + b"\0")
    return h.hexdigest()[:16]


def working_tree() -> list[str]:
    """Tracked and new (not ignored) files as they are now, like `bentoml build` sees them."""
    listed = run("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", capture=True)
    return sorted({name for name in listed.split("\0") if name and (REPO / name).is_file()})


def extra_ca() -> bytes:
    """The machine's own CA certificates (a TLS-intercepting proxy's, say), for pip and uv in builds."""
    paths = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    if os.environ.get("RENTAL_DOCKER_CA_BUNDLE"):
        paths.append(Path(os.environ["RENTAL_DOCKER_CA_BUNDLE"]))
    return b"".join(p.read_bytes().rstrip(b"\n") + b"\n" for p in paths if p.is_file())


def pricing_image(force: bool) -> None:
    bentofile = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    files = {name: REPO / name for pattern in bentofile["include"] for name in _glob(pattern)}
    for name in ("bentofile.yaml", bentofile["python"]["requirements_txt"]):
        files[name] = REPO / name
    digest = digest_of(list(files.items()), image_id(PYTHON_IMAGE) or "")
    if not force and current(f"{PRICING_IMAGE}:latest", digest):
        print(f"{PRICING_IMAGE}:latest is current ({digest})")
        return
    started = time.monotonic()
    tag = run(BIN / "bentoml", "build", "--output", "tag", capture=True).splitlines()[-1].removeprefix("__tag__:")
    version = tag.split(":", 1)[1]
    run(
        BIN / "bentoml",
        "containerize",
        tag,
        "--backend",
        "docker",
        "-t",
        f"{PRICING_IMAGE}:latest",
        "-t",
        f"{PRICING_IMAGE}:{version}",
        "--opt",
        f"label={INPUTS_LABEL}={digest}",
    )
    print(f"{PRICING_IMAGE}:latest ({tag}) built in {time.monotonic() - started:.0f} s")
    drop_stale(PRICING_IMAGE)


def _glob(pattern: str) -> list[str]:
    excluded = "__pycache__"
    return [p.relative_to(REPO).as_posix() for p in REPO.glob(pattern) if p.is_file() and excluded not in p.parts]


def app_image(force: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="rental-app-") as tmp:
        context = Path(tmp)
        for name in working_tree():
            if not name.startswith(APP_EXCLUDED):
                (context / "src" / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, context / "src" / name)
        # The locked versions, with hashes, without the dev group; the project itself installed apart.
        run(
            "python3",  # uv as the Makefile runs it
            "-m",
            "uv",
            "export",
            "--frozen",
            "--no-dev",
            "--no-emit-project",
            "--no-header",
            "--format",
            "requirements.txt",
            "--output-file",
            context / "requirements.txt",
            capture=True,
        )
        (context / "extra-ca.crt").write_bytes(extra_ca())
        shutil.copy2(HERE / "Dockerfile.app", context / "Dockerfile")
        files = [(p.relative_to(context).as_posix(), p) for p in context.rglob("*") if p.is_file()]
        digest = digest_of(files, image_id(PYTHON_IMAGE) or "")
        if not force and current(f"{APP_IMAGE}:latest", digest):
            print(f"{APP_IMAGE}:latest is current ({digest})")
            return
        started = time.monotonic()
        run(
            "docker",
            "build",
            "--pull=false",
            "--label",
            f"{INPUTS_LABEL}={digest}",
            "-t",
            f"{APP_IMAGE}:latest",
            "-t",
            f"{APP_IMAGE}:{digest}",
            context,
        )
        print(f"{APP_IMAGE}:latest built in {time.monotonic() - started:.0f} s")
        drop_stale(APP_IMAGE)
    drop_old_build_stages()


def drop_old_build_stages() -> None:
    """The classic builder leaves each build stage's image untagged: the newest is the next
    build's cache (the requirements layer, unchanged most of the time), older ones are garbage."""
    listed = run(
        "docker",
        "image",
        "ls",
        "--quiet",
        "--no-trunc",
        "--filter",
        "dangling=true",
        "--filter",
        f"label={BUILD_STAGE_LABEL}",
        capture=True,
    ).split()  # newest first
    for old in listed[1:]:
        subprocess.run(["docker", "rmi", old], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="build both images even when current")
    parser.add_argument("--only", choices=("pricing", "app"), help="one image")
    args = parser.parse_args()
    run(HERE / "base_images.sh")
    if args.only in (None, "pricing"):
        pricing_image(args.force)
    if args.only in (None, "app"):
        app_image(args.force)


if __name__ == "__main__":
    main()
