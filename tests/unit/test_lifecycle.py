"""The lifecycle the local servers share, on a real process: a tiny TCP server in Python.

It runs the steps Kafka and Redis both rely on (pid file, reuse, config drift, a port held by
a stranger, death or silence during start-up, stop) without the weight of either server.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from rental.servers.lifecycle import LocalServer, ServerFiles, ServiceError, pid_alive, port_in_use, redact

# Reads "port N" (or "crash" / "hang") from the config file named on its command line.
SERVER = """
import socket, sys, time
config = open(sys.argv[1]).read()
if "crash" in config:
    print("bad config: crash"); sys.exit(3)
if "hang" in config:
    time.sleep(600)
port = int(config.split("port ")[1].split()[0])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port)); srv.listen()
print("listening", flush=True)
while True:
    srv.accept()[0].close()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TinyServer(LocalServer):
    name = "tiny"
    title = "the tiny server"
    noun = "server"
    external_env = "TINY_URL"
    start_timeout_env = "TINY_START_TIMEOUT_S"
    poll_s = 0.05

    def __init__(self, root: Path, port: int, mode: str = "", external: str | None = None, timeout_s: float = 10):
        self.port, self.mode, self.external = port, mode, external
        self.files = ServerFiles(root, root / "tiny.conf", root / "tiny.pid", root / "logs" / "tiny.log",
                                 root / "logs" / "tiny.out")  # fmt: skip
        self.host, self.address = "127.0.0.1", redact(external or f"tcp://127.0.0.1:{port}")
        self.is_external, self.start_timeout_s, self.stop_timeout_s = external is not None, timeout_s, 5.0

    def ports(self):
        return [(self.port, "TINY_PORT")]

    def external_example(self, port):
        return f"tcp://127.0.0.1:{port}"

    def check_installed(self):
        return None

    def render_config(self):
        return f"port {self.port}\n{self.mode}\n"

    def argv(self):
        return [sys.executable, "-c", SERVER, str(self.files.config)]

    def not_ready(self, pid, budget_s):
        return None if port_in_use("127.0.0.1", self.port) else "port not open yet"

    def external_reachable(self):
        return port_in_use("127.0.0.1", int(self.external.rsplit(":", 1)[1]))


@pytest.fixture
def said() -> list[str]:
    return []


def test_start_reuse_stop(tmp_path, said):
    server = TinyServer(tmp_path, free_port())
    assert server.status().state == "stopped"
    assert server.start(said.append) is True
    pid = server.running_pid()
    assert pid is not None and int(server.files.pid.read_text()) == pid
    assert said[-1] == f"tiny: ready at tcp://127.0.0.1:{server.port}"
    assert server.status() == server.status().__class__("tiny", server.address, pid, "running", "started by us")
    assert "listening" in server.files.stdout.read_text()

    again = TinyServer(tmp_path, server.port)  # another process's view: found by its pid file
    assert again.start(said.append) is False
    assert said[-1] == f"tiny: already running at tcp://127.0.0.1:{server.port} (pid {pid})"

    assert again.stop(said.append) is True
    assert said[-1] == f"tiny: stopped (pid {pid})"
    assert not pid_alive(pid) and not server.files.pid.exists()
    assert server.status().state == "stopped"
    assert server.stop(said.append) is False
    assert said[-1] == "tiny: not running"


def test_changed_settings_are_refused_while_running(tmp_path, said):
    server = TinyServer(tmp_path, free_port())
    server.start(said.append)
    try:
        with pytest.raises(ServiceError, match="runs with other settings than the current ones") as error:
            TinyServer(tmp_path, server.port, mode="verbose").start(said.append)
        assert "rental services down tiny && rental services up tiny" in str(error.value)
        assert server.running_pid() is not None  # refused, not restarted
    finally:
        server.stop()


def test_port_held_by_a_stranger(tmp_path):
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        port = stranger.getsockname()[1]
        with pytest.raises(ServiceError, match=f"port {port} on 127.0.0.1 is already in use") as error:
            TinyServer(tmp_path, port).start()
    assert "TINY_PORT=<port>" in str(error.value) and f"TINY_URL=tcp://127.0.0.1:{port}" in str(error.value)
    assert not (tmp_path / "tiny.pid").exists()


def test_death_during_start_up_shows_the_log(tmp_path):
    server = TinyServer(tmp_path, free_port(), mode="crash")
    with pytest.raises(ServiceError, match="the tiny server exited during start-up") as error:
        server.start()
    assert "bad config: crash" in str(error.value)
    assert not server.files.pid.exists()


def test_silence_until_the_deadline_stops_the_process(tmp_path):
    server = TinyServer(tmp_path, free_port(), mode="hang", timeout_s=1)
    with pytest.raises(ServiceError, match=r"was not ready within 1s \(TINY_START_TIMEOUT_S\); last error: port not"):
        server.start()
    assert not server.files.pid.exists()
    assert server.running_pid() is None


def test_a_recycled_pid_is_not_ours(tmp_path):
    server = TinyServer(tmp_path, free_port())
    server.files.pid.write_text(f"{os.getpid()}\n")  # alive, but not started from our config
    assert server.running_pid() is None
    assert not server.files.pid.exists()  # the stale file is cleared
    assert server.stop() is False
    assert pid_alive(os.getpid())


def test_external_server_is_checked_never_started_or_stopped(tmp_path, said):
    with socket.socket() as external:
        external.bind(("127.0.0.1", 0))
        external.listen()
        port = external.getsockname()[1]
        server = TinyServer(tmp_path / "unused", free_port(), external=f"tcp://user:s3cret@127.0.0.1:{port}")
        assert server.start(said.append) is False
        assert server.stop(said.append) is False
        status = server.status()
    assert said == [
        f"tiny: using external server tcp://user:***@127.0.0.1:{port} (TINY_URL)",
        f"tiny: external server tcp://user:***@127.0.0.1:{port} left alone",
    ]
    assert (status.state, status.origin, status.pid) == ("reachable", "external", None)
    assert server.status().state == "unreachable"
    assert not (tmp_path / "unused").exists()


@pytest.mark.parametrize(
    ("address", "printed"),
    [
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://app:hunter2@cache:6380/1", "rediss://app:***@cache:6380/1"),
        ("redis://app@cache:6379/0", "redis://app@cache:6379/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("127.0.0.1:9092", "127.0.0.1:9092"),
        ("broker-1:9092,broker-2:9092", "broker-1:9092,broker-2:9092"),
    ],
)
def test_printed_addresses_carry_no_password(address, printed):
    assert redact(address) == printed
