"""A real TCP proxy on loopback in front of a real server, which a test can make black-hole.

Until ``black_hole`` it forwards every byte both ways. After it, every connection (open or new)
stays open and keeps being read, but nothing is forwarded either way: the client's writes
vanish before the server sees them and no reply ever comes, as on a half-open connection after
a network partition. Only a client's own timeout gets it out of that; a stopped or restarted
server would instead refuse or reset, which a client notices at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading

CHUNK = 1 << 16


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int):
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._black_hole = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.dropped = 0  # bytes read and not forwarded since ``black_hole``
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()

    def black_hole(self) -> None:
        self._black_hole.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            self._keep(client)
            if self._black_hole.is_set():  # connected, and then nothing: read and drop
                threading.Thread(target=self._pump, args=(client, None), daemon=True).start()
                continue
            server = socket.create_connection(self._upstream)
            self._keep(server)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _pump(self, src: socket.socket, dst: socket.socket | None) -> None:
        while True:
            try:
                chunk = src.recv(CHUNK)
            except OSError:
                return
            if not chunk:
                if dst is not None and not self._black_hole.is_set():
                    _close(dst)  # pass an orderly close on, while forwarding
                return
            if dst is None or self._black_hole.is_set():
                with self._lock:
                    self.dropped += len(chunk)
                continue
            try:
                dst.sendall(chunk)
            except OSError:
                _close(src)
                return

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already shut down by the other side
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
