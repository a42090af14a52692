#!/usr/bin/env bash
# Make sure a Docker Engine answers: do nothing when one does (Docker Desktop, a system service,
# DOCKER_HOST naming a remote engine), otherwise start Debian's `dockerd` in the background.
# It keeps running after this script: later builds, tests and compose reuse it.
# Stop it with `deploy/docker/engine.sh stop` (only an engine this script started).
#
# Settings (environment):
#   RENTAL_DOCKER_DATA_ROOT  images, containers, volumes      (default /var/lib/docker)
#   RENTAL_DOCKER_STATE_DIR  dockerd's log and pid file        (default /var/run/rental-dockerd)
#   RENTAL_DOCKER_WAIT       seconds to wait for the socket    (default 60)
set -euo pipefail

DATA_ROOT=${RENTAL_DOCKER_DATA_ROOT:-/var/lib/docker}
STATE_DIR=${RENTAL_DOCKER_STATE_DIR:-/var/run/rental-dockerd}
WAIT=${RENTAL_DOCKER_WAIT:-60}
LOG=$STATE_DIR/dockerd.log
PIDFILE=$STATE_DIR/dockerd.pid
SOCKET=/var/run/docker.sock

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

stop() {
  if [ ! -f "$PIDFILE" ]; then
    echo "no dockerd started by this script (no $PIDFILE)"
    return 0
  fi
  pid=$(cat "$PIDFILE")
  if kill -0 "$pid" 2>/dev/null; then
    $SUDO kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  $SUDO rm -f "$PIDFILE"
  echo "dockerd $pid stopped"
}

start() {
  if answers; then
    echo "Docker Engine $(docker version --format '{{.Server.Version}}') already answers"
    return 0
  fi
  if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix://$SOCKET" ]; then
    echo "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local dockerd in its place" >&2
    return 1
  fi
  if ! command -v dockerd >/dev/null; then
    echo "no dockerd on PATH: run 'make docker-deps' (Debian's docker.io package)" >&2
    return 1
  fi
  $SUDO mkdir -p "$STATE_DIR" "$DATA_ROOT"
  # A pid file left by a dockerd that died (machine restart, kill -9) would stop a new one.
  if [ -f "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then $SUDO rm -f "$PIDFILE"; fi
  if [ -f "$PIDFILE" ]; then
    echo "dockerd $(cat "$PIDFILE") runs but does not answer yet; waiting"
  else
    # setsid: its own session, so it outlives this shell, make and the test that started it.
    # The log is opened by the (possibly sudo'd) shell that runs dockerd, not by this one.
    $SUDO setsid sh -c 'log=$1; shift; exec "$@" </dev/null >>"$log" 2>&1' sh "$LOG" \
      dockerd --data-root "$DATA_ROOT" --pidfile "$PIDFILE" -H "unix://$SOCKET" &
  fi
  for _ in $(seq 1 "$WAIT"); do
    if answers; then
      echo "Docker Engine $(docker version --format '{{.Server.Version}}') started (data $DATA_ROOT, log $LOG)"
      return 0
    fi
    sleep 1
  done
  echo "dockerd did not answer within ${WAIT}s; the end of $LOG:" >&2
  $SUDO tail -n 30 "$LOG" >&2 || true
  return 1
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
