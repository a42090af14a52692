"""One start / stop / status lifecycle for the local servers (Kafka, Redis), and its plumbing.

A server is started detached (its own session) so it outlives the CLI that started it; a pid
file under its folder in ``services_dir`` is what marks the process as *ours*, and only ours is
ever stopped. A server named by an environment variable instead (``KAFKA_BOOTSTRAP_SERVERS``,
``REDIS_URL``) is *external*: only checked, never started or stopped. ``LocalServer`` holds the
steps every server shares; a subclass says only what is its own: how it is installed, its
config, its command line, how to tell it is ready, and what it needs once up.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rental.connections import mask_url


class ServiceError(RuntimeError):
    """A service could not be started, reached or stopped; the message says what to do."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    state: str  # "running", "stopped", "reachable", "unreachable"
    origin: str  # "started by us", "external", or "-" when nothing runs


Say = Callable[[str], None]  # how a service reports what it did (print, a console, or nothing)


def quiet(_: str) -> None:
    pass


redact = mask_url  # addresses are printed, their passwords are not


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; reaps it first if it is our own exited child (no zombies)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (FileNotFoundError, PermissionError):
        return []


def live_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process runs and its command line contains ``marker``.

    The marker (our config file's path) guards against a recycled pid naming a stranger.
    A stale pid file is removed.
    """
    pid = read_pid(pid_file)
    if pid is None:
        return None
    if pid_alive(pid) and any(marker in arg for arg in cmdline(pid)):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def port_in_use(host: str, port: int) -> bool:
    """Something accepts connections on host:port, or the port cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        if probe.connect_ex((host, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def spawn_detached(argv: list[str], log_file: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` in its own session with stdout/stderr appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def terminate(pid: int, timeout_s: float) -> bool:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL. Returns True if it stopped cleanly."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(50):
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    return False


def log_tail(log_file: Path, lines: int = 15) -> str:
    try:
        text = log_file.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join("    " + line for line in text[-lines:])


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise start/stop of one service across processes (two `up`s at once, test workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class ServerFiles:
    """Where one local server keeps its files: all under its own folder of ``services_dir``."""

    root: Path
    config: Path
    pid: Path
    log: Path  # the server's own log
    stdout: Path  # what the process writes to stdout and stderr

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"


class LocalServer(ABC):
    """The lifecycle every local server shares: start (or check an external one), stop, status.

    ``start`` is idempotent: a server of ours that already runs is reused if its config is still
    the one the settings render (otherwise the user is told to restart it), and a port held by a
    process we did not start is an error, never silently shared. Start and stop hold a file lock,
    so two ``up``s at once (or test workers) cannot start two servers.
    """

    name: ClassVar[str]  # the CLI's name for it, and the prefix of every message
    title: ClassVar[str]  # the subject of start-up errors: "the Kafka broker"
    noun: ClassVar[str]  # "broker" or "server", as in "our broker (pid 42)"
    external_env: ClassVar[str]  # the variable that names an external server instead
    start_timeout_env: ClassVar[str]
    poll_s: ClassVar[float] = 0.5  # pause between readiness checks

    # Set by each server's __init__ from the settings.
    files: ServerFiles
    host: str
    address: str  # where clients reach it, as printed (any password redacted)
    is_external: bool  # named by external_env: only checked, never started or stopped
    start_timeout_s: float
    stop_timeout_s: float

    # ------------------------------------------------------------ what each server says

    @abstractmethod
    def ports(self) -> list[tuple[int, str]]:
        """Each port it binds, with the setting that changes it."""

    @abstractmethod
    def external_example(self, port: int) -> str:
        """How to name a server on ``port`` in ``external_env``."""

    @abstractmethod
    def check_installed(self) -> None:
        """Raise ServiceError saying how to install it; nothing is downloaded at start time."""

    @abstractmethod
    def render_config(self) -> str:
        """The config file's text; a running server whose file differs runs on stale settings."""

    @abstractmethod
    def argv(self) -> list[str]: ...

    @abstractmethod
    def not_ready(self, pid: int, budget_s: float) -> str | None:
        """None once the server started as ``pid`` serves; otherwise why not yet."""

    @abstractmethod
    def external_reachable(self) -> bool: ...

    @property
    def pid_marker(self) -> str:
        """What the command line of our process contains, so a recycled pid is not taken for it."""
        return str(self.files.config)

    def write_config(self) -> Path:
        f = self.files
        for folder in (f.root, f.data, f.log.parent):
            folder.mkdir(parents=True, exist_ok=True)
        f.config.write_text(self.render_config())
        return f.config

    def prepare(self, say: Say) -> None:
        """One-time work between writing the config and the first start (Kafka formats storage)."""
        return None

    def check_external(self) -> None:
        """Raise ServiceError if the external server does not answer (``provision`` may check too)."""
        return None

    def provision(self) -> list[str]:
        """Make what the server must hold exist (Kafka's topics); one line per thing to report."""
        return []

    def starting_line(self, pid: int) -> str | None:
        """Said right after launch, for servers slow enough to need it."""
        return None

    def ready_line(self, pid: int) -> str:
        return f"{self.name}: ready at {self.address}"

    def exit_hint(self) -> str:
        """Where else to look when the process dies while starting."""
        return ""

    def port_taken(self, port: int, env: str) -> ServiceError:
        return ServiceError(
            f"{self.name}: port {port} on {self.host} is already in use by a process this project did not start.\n"
            f"  Stop that process, or choose another port with {env}=<port>,\n"
            f"  or use that server as an external one with {self.external_env}={self.external_example(port)}."
        )

    # ------------------------------------------------------------ the lifecycle

    def running_pid(self) -> int | None:
        """Pid of the server this project started, if it runs."""
        return live_pid(self.files.pid, self.pid_marker)

    def start(self, say: Say = quiet) -> bool:
        """Start the server (or check the external one). True only if this call started it,
        so callers can stop just what they started."""
        if self.is_external:
            try:
                self.check_external()
                lines = self.provision()
            except ServiceError as exc:
                raise ServiceError(f"{exc} (set by {self.external_env})") from None
            say(f"{self.name}: using external {self.noun} {self.address} ({self.external_env})")
            for line in lines:
                say(line)
            return False
        f = self.files
        f.root.mkdir(parents=True, exist_ok=True)
        with file_lock(f.lock):
            pid = self.running_pid()
            started = pid is None
            if pid is None:
                pid = self._launch(say)
            elif f.config.read_text() != self.render_config():
                raise ServiceError(
                    f"{self.name}: our {self.noun} (pid {pid}) runs with other settings than the current ones "
                    f"(see {f.config}); restart it: rental services down {self.name} && rental services up {self.name}"
                )
            try:
                self._wait_ready(pid)
            except ServiceError:
                if started:
                    terminate(pid, self.stop_timeout_s)
                    f.pid.unlink(missing_ok=True)
                raise
            if not started:
                say(f"{self.name}: already running at {self.address} (pid {pid})")
        for line in self.provision():
            say(line)
        if started:
            say(self.ready_line(pid))
        return started

    def stop(self, say: Say = quiet) -> bool:
        """Stop the server this project started (never an external one). True if one was stopped."""
        if self.is_external:
            say(f"{self.name}: external {self.noun} {self.address} left alone")
            return False
        f = self.files
        with file_lock(f.lock):
            pid = self.running_pid()
            if pid is None:
                say(f"{self.name}: not running")
                return False
            clean = terminate(pid, self.stop_timeout_s)
            f.pid.unlink(missing_ok=True)
        say(f"{self.name}: stopped (pid {pid})" + ("" if clean else f", killed after {self.stop_timeout_s:.0f}s"))
        return True

    def status(self) -> ServiceStatus:
        if self.is_external:
            state = "reachable" if self.external_reachable() else "unreachable"
            return ServiceStatus(self.name, self.address, None, state, "external")
        pid = self.running_pid()
        if pid is None:
            return ServiceStatus(self.name, self.address, None, "stopped", "-")
        return ServiceStatus(self.name, self.address, pid, "running", "started by us")

    def _launch(self, say: Say) -> int:
        """Start the process under the lock, once nothing of ours runs; its pid file marks it ours."""
        for port, env in self.ports():
            if port_in_use(self.host, port):
                raise self.port_taken(port, env)
        self.check_installed()
        self.write_config()
        self.prepare(say)
        f = self.files
        pid = spawn_detached(self.argv(), f.stdout, cwd=f.root)
        f.pid.write_text(f"{pid}\n")
        line = self.starting_line(pid)
        if line:
            say(line)
        return pid

    def _wait_ready(self, pid: int) -> None:
        f = self.files
        deadline = time.monotonic() + self.start_timeout_s
        reason = "not started yet"
        while time.monotonic() < deadline:
            # The child we just started is watched by pid alone: its command line is no guide while
            # it starts (Redis rewrites its process title, leaving /proc/<pid>/cmdline briefly empty).
            if not pid_alive(pid):
                raise ServiceError(
                    f"{self.title} exited during start-up. Log: {f.log}{self.exit_hint()}\n"
                    f"{log_tail(f.stdout)}\n{log_tail(f.log)}"
                )
            reason = self.not_ready(pid, deadline - time.monotonic())
            if reason is None:
                return
            time.sleep(self.poll_s)
        raise ServiceError(
            f"{self.title} (pid {pid}) was not ready within {self.start_timeout_s:.0f}s "
            f"({self.start_timeout_env}); last error: {reason}\n  log: {f.log}\n{log_tail(f.log)}"
        )
