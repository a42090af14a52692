#!/usr/bin/env bash
# The base images the project's Dockerfiles start FROM, under their usual names:
#   rental/debian:bookworm  Debian bookworm: `debian:bookworm-slim` pulled and tagged, or, where no
#                           registry answers, a `debootstrap --variant=minbase` root file system
#                           imported with `docker import`;
#   python:3.11-slim        pulled, or a stand-in built on rental/debian:bookworm from Debian's
#                           python3 (3.11) by deploy/docker/python-slim/Dockerfile.
# An image already present is kept (RENTAL_DOCKER_REBUILD=1 makes them again), so this is cheap to
# run before every build. Starts the Docker Engine first (deploy/docker/engine.sh).
#
# Settings (environment):
#   RENTAL_DEBIAN_MIRROR     Debian mirror for debootstrap and apt  (default http://deb.debian.org/debian)
#   RENTAL_DOCKER_CA_BUNDLE  a PEM file of extra CA certificates the builds must trust (added to
#                            the machine's /usr/local/share/ca-certificates/*.crt, which always are)
#   RENTAL_DOCKER_REBUILD    1: build the local images again even when present
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DEBIAN_IMAGE=rental/debian:bookworm
PYTHON_IMAGE=python:3.11-slim
MIRROR=${RENTAL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
REBUILD=${RENTAL_DOCKER_REBUILD:-0}
export DOCKER_BUILDKIT=0 # BuildKit fetches its Dockerfile frontend from a registry

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

present() { [ "$REBUILD" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

# A rebuild leaves the image it replaced untagged: remove that one (and only that one: other
# builds may be running, and their intermediate images look just as dangling).
drop_replaced() {
  if [ -n "$1" ] && [ "$(docker image inspect --format '{{len .RepoTags}}' "$1" 2>/dev/null)" = 0 ]; then
    docker rmi "$1" >/dev/null || true
  fi
}

debian_image() {
  if present "$DEBIAN_IMAGE"; then echo "$DEBIAN_IMAGE present"; return; fi
  if [ "$REBUILD" != 1 ] && docker pull debian:bookworm-slim; then
    docker tag debian:bookworm-slim "$DEBIAN_IMAGE"
    return
  fi
  old=$(docker image inspect --format '{{.Id}}' "$DEBIAN_IMAGE" 2>/dev/null || true)
  command -v debootstrap >/dev/null || { echo "no debootstrap: run 'make docker-deps'" >&2; exit 1; }
  echo "building $DEBIAN_IMAGE with debootstrap from $MIRROR"
  root=$(mktemp -d /var/tmp/rental-debian.XXXXXX)
  trap '$SUDO rm -rf "$root"' EXIT
  $SUDO debootstrap --variant=minbase bookworm "$root" "$MIRROR"
  # The sources and the space savings of Debian's own images: security updates, no cached .debs.
  $SUDO tee "$root/etc/apt/sources.list" >/dev/null <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
  echo 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };' |
    $SUDO tee "$root/etc/apt/apt.conf.d/docker-clean" >/dev/null
  $SUDO rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
  $SUDO tar -C "$root" --numeric-owner -c . |
    docker import --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --message "debootstrap --variant=minbase bookworm $MIRROR" - "$DEBIAN_IMAGE"
  $SUDO rm -rf "$root"
  trap - EXIT
  drop_replaced "$old"
}

python_image() {
  if present "$PYTHON_IMAGE"; then echo "$PYTHON_IMAGE present"; return; fi
  if [ "$REBUILD" != 1 ] && docker pull "$PYTHON_IMAGE"; then return; fi
  old=$(docker image inspect --format '{{.Id}}' "$PYTHON_IMAGE" 2>/dev/null || true)
  echo "building a local $PYTHON_IMAGE from Debian's python3 on $DEBIAN_IMAGE"
  context=$(mktemp -d)
  trap 'rm -rf "$context"' EXIT
  cp "$HERE/python-slim/Dockerfile" "$context/"
  : >"$context/extra-ca.crt"
  for ca in /usr/local/share/ca-certificates/*.crt ${RENTAL_DOCKER_CA_BUNDLE:-}; do
    if [ -f "$ca" ]; then cat "$ca" >>"$context/extra-ca.crt"; echo >>"$context/extra-ca.crt"; fi
  done
  docker build --pull=false --build-arg "BASE=$DEBIAN_IMAGE" -t "$PYTHON_IMAGE" "$context"
  rm -rf "$context"
  trap - EXIT
  drop_replaced "$old"
}

"$HERE/engine.sh"
debian_image
python_image
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^($DEBIAN_IMAGE|$PYTHON_IMAGE) " || true
