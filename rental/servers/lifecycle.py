"""Process plumbing shared by the local services: pid files, ports, detached start, stop.

The services are started detached (their own session) so they outlive the CLI that started
them; a pid file under ``services_dir`` is what marks a process as *ours*, and only ours is
ever stopped.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


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


def port_taken_error(
    service: str, host: str, port: int, port_env: str, external_env: str, example: str
) -> ServiceError:
    return ServiceError(
        f"{service}: port {port} on {host} is already in use by a process this project did not start.\n"
        f"  Stop that process, or choose another port with {port_env}=<port>,\n"
        f"  or use that server as an external one with {external_env}={example}."
    )


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


def stop_started(name: str, lock: Path, pid_file: Path, find_pid, timeout_s: float, say) -> bool:
    """Stop the process this project started for ``name``; True if one was running."""
    with file_lock(lock):
        pid = find_pid()
        if pid is None:
            say(f"{name}: not running")
            return False
        clean = terminate(pid, timeout_s)
        pid_file.unlink(missing_ok=True)
    say(f"{name}: stopped (pid {pid})" + ("" if clean else f", killed after {timeout_s:.0f}s"))
    return True
