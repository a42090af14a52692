"""Minimal load clients: pre-encoded requests on one kept-alive connection, nothing else.

The benchmarks measure the server, so the client's own cost must be small and alike for every
protocol. grpcio's Python stub costs about 0.3 ms of CPU a call on these machines against
0.05 ms for a raw HTTP/1.1 exchange, which would be charged to gRPC. ``RawGrpc`` speaks just
enough HTTP/2 for unary gRPC calls: the connection preface, SETTINGS and PING acknowledgements,
flow-control windows, one HEADERS and one DATA frame a call (HPACK literals, no dynamic table),
and it reads frames until its stream ends. Responses are checked, not decoded: a unary call
that succeeded carries exactly one message before its trailers.

A service with API tokens gets ``authorization: Bearer <token>`` in every pre-encoded request;
one with TLS gets the same bytes over a TLS socket (ALPN ``h2`` for gRPC), from the
``ssl.SSLContext`` the caller gives (``rental.servers.pricing.ClientTLS``).
"""

from __future__ import annotations

import socket
import ssl
import struct

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BIG_WINDOW = 2**31 - 1
AUTHORIZATION = 23  # HPACK static table: authorization


def _connect(address: tuple[str, int], tls: ssl.SSLContext | None = None) -> socket.socket:
    sock = socket.create_connection(address, timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock if tls is None else tls.wrap_socket(sock, server_hostname=address[0])


class RawHttp:
    """One keep-alive HTTP/1.1 connection; POSTs pre-encoded JSON bodies, returns the status. A
    connection the server closed while idle (keep-alive timeout) is reopened and the request sent
    again."""

    def __init__(self, address: str, token: str | None = None, tls: ssl.SSLContext | None = None):
        host, port = address.rsplit(":", 1)
        self.host, self.address, self.tls = f"{host}:{port}", (host, int(port)), tls
        self.auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.sock = _connect(self.address, tls)

    def request(self, path: str, body: bytes) -> bytes:
        return (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n{self.auth}"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip

    def send(self, raw: bytes) -> int:
        try:
            return self._exchange(raw)
        except ConnectionError:
            self.sock.close()
            self.sock = _connect(self.address, self.tls)
            return self._exchange(raw)

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        return chunk

    def _exchange(self, raw: bytes) -> int:
        self.sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            data += self._recv()
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length"))
        while len(rest) < length:
            rest += self._recv()
        return int(lines[0].split(b" ", 2)[1])


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload


def _integer(value: int, prefix_bits: int) -> bytes:
    """An HPACK integer (RFC 7541 5.1) with the first byte's flag bits zero."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((value,))
    out, value = [limit], value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes((*out, value))


def _literal(name_index: int, value: str) -> bytes:
    """HPACK "literal header field without indexing, indexed name" (RFC 7541 6.2.2), no Huffman."""
    raw = value.encode()
    return _integer(name_index, 4) + _integer(len(raw), 7) + raw


def _literal_new(name: str, value: str) -> bytes:
    return b"\x00" + bytes((len(name),)) + name.encode() + bytes((len(value),)) + value.encode()


class RawGrpc:
    """Unary gRPC calls over one HTTP/2 connection, one call at a time."""

    def __init__(self, address: str, token: str | None = None, tls: ssl.SSLContext | None = None):
        host, port = address.rsplit(":", 1)
        self.authority, self.address, self.tls = f"{host}:{port}", (host, int(port)), tls is not None
        self.auth = _literal(AUTHORIZATION, f"Bearer {token}") if token else b""
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
        self.sock = _connect(self.address, tls)
        self.buffer = b""
        self.stream = 1
        self.send_window = 65_535  # the connection's, grown by the server's WINDOW_UPDATEs
        settings = struct.pack(">HI", 0x2, 0) + struct.pack(">HI", 0x4, BIG_WINDOW)  # no push; big stream windows
        self.sock.sendall(PREFACE + _frame(SETTINGS, 0, 0, settings)
                          + _frame(WINDOW_UPDATE, 0, 0, (BIG_WINDOW - 65_535).to_bytes(4, "big")))  # fmt: skip

    def request(self, method: str, message: bytes) -> tuple[bytes, bytes]:
        """A call's pre-encoded HPACK block and length-prefixed message, for ``send``."""
        block = (b"\x83" + (b"\x87" if self.tls else b"\x86")  # :method POST, :scheme https or http
                 + _literal(4, method) + _literal(1, self.authority)  # :path, :authority
                 + _literal(31, "application/grpc") + _literal_new("te", "trailers") + self.auth)  # fmt: skip
        return block, b"\x00" + len(message).to_bytes(4, "big") + message

    def send(self, raw: tuple[bytes, bytes]) -> bytes:
        """The call's response message; ``RuntimeError`` when the call did not succeed."""
        block, body = raw
        stream, self.stream = self.stream, self.stream + 2
        while self.send_window < len(body):
            self._read_frame(None)
        self.send_window -= len(body)
        self.sock.sendall(_frame(HEADERS, END_HEADERS, stream, block) + _frame(DATA, END_STREAM, stream, body))
        message = b""
        while True:
            kind, flags, payload = self._read_frame(stream)
            if kind == DATA:
                message += payload
            elif kind == HEADERS and flags & END_STREAM:
                if len(message) < 5 or int.from_bytes(message[1:5], "big") != len(message) - 5:
                    raise RuntimeError(f"stream {stream} ended without one whole message (a gRPC error)")
                return message[5:]
            elif kind == RST_STREAM:
                raise RuntimeError(f"stream {stream} reset by the server")

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _read_frame(self, stream: int | None) -> tuple[int, int, bytes]:
        """The next frame of ``stream``; connection frames on the way are answered here."""
        while True:
            head = self._read(9)
            length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
            on = int.from_bytes(head[5:9], "big") & 0x7FFF_FFFF
            payload = self._read(length)
            if kind == SETTINGS and not flags & ACK:
                self.sock.sendall(_frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                self.sock.sendall(_frame(PING, ACK, 0, payload))
            elif kind == WINDOW_UPDATE and on == 0:
                self.send_window += int.from_bytes(payload, "big") & 0x7FFF_FFFF
                if stream is None:
                    return kind, flags, payload
            elif kind == GOAWAY:
                raise ConnectionError(f"GOAWAY from the server: {payload[8:]!r}")
            elif on == stream:
                return kind, flags, payload
