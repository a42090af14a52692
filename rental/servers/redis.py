"""A local Redis (Debian's ``redis-server``) for Feast's online store, tests and CI.

Our Redis runs from a config we generate, bound to 127.0.0.1 on ``settings.redis_port``, with
its data, log and pid file under ``settings.redis_dir``, detached so it outlives the CLI. A pid
file marks it as ours; a Redis we did not start is never stopped or silently reused: use it on
purpose with ``REDIS_URL``. Installing the Debian package may auto-start the distribution's
own service on 6379, which would then hold our port: ``install`` stops and disables that
service right after installing it (and only then), so a fresh machine can go straight on to
``up``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import redis as redis_py

from rental.connections import ConnectionSettingsError, mask_text, mask_url, redis_client, secrets_of
from rental.servers.lifecycle import (
    LocalServer,
    Say,
    ServerFiles,
    ServiceError,
    pid_alive,
    quiet,
    read_pid,
)
from rental.settings import Settings, get_settings

DEBIAN_SERVICE = "redis-server"
DEBIAN_PID_FILE = Path("/run/redis/redis-server.pid")


# ---------------------------------------------------------------------------- install


def binary(s: Settings | None = None) -> str | None:
    s = s or get_settings()
    return shutil.which(s.redis_server_bin) or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


def _apt(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], capture_output=True, text=True, env=env)


def _has_candidate() -> bool:
    done = subprocess.run(["apt-cache", "policy", DEBIAN_SERVICE], capture_output=True, text=True)
    return "Candidate:" in done.stdout and "Candidate: (none)" not in done.stdout


def _stop_debian_service(say: Say) -> None:
    """Stop and disable the service that installing Debian's package may have started."""
    if Path("/run/systemd/system").exists() and shutil.which("systemctl"):
        subprocess.run(["systemctl", "disable", "--now", DEBIAN_SERVICE], capture_output=True)
    elif Path(f"/etc/init.d/{DEBIAN_SERVICE}").exists():
        subprocess.run(["service", DEBIAN_SERVICE, "stop"], capture_output=True)
        if shutil.which("update-rc.d"):
            subprocess.run(["update-rc.d", DEBIAN_SERVICE, "disable"], capture_output=True)
    pid = read_pid(DEBIAN_PID_FILE)
    if pid is not None and pid_alive(pid):
        say(f"redis: Debian's {DEBIAN_SERVICE} service still runs (pid {pid}); stop it if it holds our port")
    else:
        say(f"redis: Debian's {DEBIAN_SERVICE} service is stopped and disabled (this project runs its own)")


def install(s: Settings | None = None, say: Say = quiet) -> bool:
    """Install Debian's redis-server if no redis-server is found. True if it installed it."""
    s = s or get_settings()
    if binary(s) is not None:
        return False
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ServiceError(
            f"'{s.redis_server_bin}' is not installed: run 'sudo apt-get install -y redis-server' "
            "(or set RENTAL_REDIS_SERVER_BIN, or REDIS_URL to use a running Redis)"
        )
    say("redis: installing Debian's redis-server package")
    if not _has_candidate():
        _apt(["update", "-q"])
    done = _apt(["install", "-y", "-q", "--no-install-recommends", DEBIAN_SERVICE])
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
        raise ServiceError(f"apt-get install redis-server failed:\n{output}")
    _stop_debian_service(say)
    if binary(s) is None:
        raise ServiceError("redis-server was installed but is not on PATH")
    return True


# ---------------------------------------------------------------------------- the server


def ping(url: str, timeout_s: float = 2.0, settings: Settings | None = None) -> dict:
    """INFO server of the Redis at ``url``, reached with the settings' TLS files; raises
    ServiceError if it does not answer or refuses the credentials."""
    settings = settings or get_settings()
    try:
        with redis_client(settings, url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s) as client:
            client.ping()
            return client.info("server")
    except (redis_py.RedisError, ConnectionSettingsError) as exc:
        raise ServiceError(
            f"no Redis answers at {mask_url(url)}: {mask_text(str(exc), secrets_of(settings))}"
        ) from None


class RedisServer(LocalServer):
    """Redis from a generated ``redis.conf`` (append-only, so data survives a restart); ready
    when the Redis answering on our port is the process we started."""

    name = "redis"
    title = "redis-server"
    noun = "server"
    external_env = "REDIS_URL"
    start_timeout_env = "RENTAL_REDIS_START_TIMEOUT_S"
    poll_s = 0.1

    def __init__(self, settings: Settings | None = None) -> None:
        self.s = s = settings or get_settings()
        root = s.redis_dir
        self.files = ServerFiles(
            root=root,
            config=root / "redis.conf",
            pid=root / "redis.pid",
            log=root / "logs" / "redis.log",
            stdout=root / "logs" / "redis.out",
        )
        self.host, self.address, self.is_external = s.redis_host, mask_url(s.redis_url), s.redis_is_external
        self.start_timeout_s, self.stop_timeout_s = s.redis_start_timeout_s, s.redis_stop_timeout_s

    @property
    def pid_marker(self) -> str:
        """Redis rewrites its process title (the config path goes), so its name is the marker."""
        return "redis"

    def ports(self) -> list[tuple[int, str]]:
        return [(self.s.redis_port, "RENTAL_REDIS_PORT")]

    def external_example(self, port: int) -> str:
        return f"redis://{self.host}:{port}/0"

    def port_taken(self, port: int, env: str) -> ServiceError:
        """Also names Debian's own service when it runs: the usual holder of 6379."""
        error = super().port_taken(port, env)
        pid = read_pid(DEBIAN_PID_FILE)
        if pid is not None and pid_alive(pid):
            error = ServiceError(
                f"{error}\n  Debian's own redis-server service runs (pid {pid}); to free the port: "
                "systemctl disable --now redis-server (or: service redis-server stop)"
            )
        return error

    def check_installed(self) -> None:
        if binary(self.s) is None:
            raise ServiceError(
                f"'{self.s.redis_server_bin}' is not installed: run `rental services install` once "
                "(apt-get install -y redis-server), or set REDIS_URL to use a running Redis"
            )

    def render_config(self) -> str:
        f = self.files
        return f"""# Generated by rental/servers/redis.py from rental/settings.py; edits are overwritten.
bind {self.s.redis_host}
port {self.s.redis_port}
protected-mode yes
daemonize no
supervised no
dir {f.data}
logfile {f.log}
appendonly yes
appendfsync everysec
save 3600 1 300 100 60 10000
"""

    def argv(self) -> list[str]:
        return [binary(self.s) or self.s.redis_server_bin, str(self.files.config)]

    def not_ready(self, pid: int, budget_s: float) -> str | None:
        try:
            info = ping(self.s.redis_url, timeout_s=1, settings=self.s)
        except ServiceError as exc:
            return str(exc)
        if int(info.get("process_id", -1)) == pid:
            return None
        return f"port answered by another Redis (pid {info.get('process_id')})"

    def check_external(self) -> None:
        ping(self.s.redis_url, timeout_s=5, settings=self.s)

    def external_reachable(self) -> bool:
        try:
            ping(self.s.redis_url, settings=self.s)
        except ServiceError:
            return False
        return True

    def ready_line(self, pid: int) -> str:
        return f"redis: ready at {self.address} (pid {pid}), data {self.files.data}, log {self.files.log}"
