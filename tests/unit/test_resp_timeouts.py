"""A Redis connection that stops answering (half-open: the writes vanish, no reply comes) fails
the HSET pipe and the HGET reader after the socket timeout, with an error that names Redis, the
wait and the setting; a pipe that failed sends nothing more and keeps failing.

The peer is a real TCP listener on loopback that reads and keeps what it is sent and never
answers, or closes the connection: the client under test is the real one, over a real socket.
"""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streaming.wire.packed import concatenated
from streaming.wire.resp import HgetMany, HsetPipe, RedisCallFailed, hset_commands

TIMEOUT_S = 0.3
SETTING = "RENTAL_STREAM_REDIS_TIMEOUT_S"


class SilentPeer:
    """Accepts connections and reads everything sent to it, answering nothing (or, with
    ``close_after_read``, closing each connection once something arrives)."""

    def __init__(self, close_after_read: bool = False):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.received = bytearray()
        self._close_after_read = close_after_read
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._open.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        while True:
            try:
                chunk = conn.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self.received += chunk
            if self._close_after_read:
                conn.close()
                return

    def bytes_received(self) -> bytes:
        with self._lock:
            return bytes(self.received)

    def close(self) -> None:
        self._listener.close()
        for conn in self._open:
            conn.close()


@pytest.fixture
def silent():
    peer = SilentPeer()
    yield peer
    peer.close()


def _client(port: int) -> Redis:
    # No client-name handshake and database 0: connecting sends nothing, as to a Redis that
    # went quiet after the connection was made.
    # No retries: redis-py's default backs off for seconds before it reports a refused connection.
    return Redis(host="127.0.0.1", port=port, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S,
                 lib_name=None, lib_version=None, retry=Retry(NoBackoff(), 0))  # fmt: skip


def _batch(n: int, tag: bytes):
    keys, key_ends = concatenated([tag + b"-%d" % i for i in range(n)])
    fields = concatenated([b"f"])
    values, value_ends = concatenated([b"v"] * n)
    return keys, key_ends, fields, values, value_ends


def test_a_silent_redis_fails_the_pipe_after_the_timeout_and_it_sends_nothing_more(silent):
    pipe = HsetPipe(_client(silent.port), timeout_setting=SETTING)
    first, second, third = _batch(3, b"a"), _batch(2, b"b"), _batch(2, b"c")
    started = time.monotonic()
    for batch in (first, second, third):
        pipe.hset_many(*batch)
    with pytest.raises(RedisCallFailed) as failed:
        pipe.flush()
    waited = time.monotonic() - started
    message = str(failed.value)
    assert f"127.0.0.1:{silent.port}" in message and "Redis" in message
    assert f"within {TIMEOUT_S:g} s" in message and SETTING in message and "3 HSETs" in message
    assert TIMEOUT_S * 0.9 <= waited < TIMEOUT_S + 2.0  # the timeout fired: no hang, no early give-up

    # The batches queued behind the failed one were not sent: only the first reached the peer.
    time.sleep(0.1)
    keys, key_ends, (field_bytes, field_ends), values, value_ends = first
    sent_first = hset_commands(keys, key_ends, field_bytes, field_ends, values, value_ends.astype(np.int64)).tobytes()
    assert silent.bytes_received() == sent_first

    # Final: every later call raises the same failure, and still sends nothing.
    with pytest.raises(RedisCallFailed, match="did not respond"):
        pipe.hset_many(*_batch(1, b"d"))
    with pytest.raises(RedisCallFailed, match="did not respond"):
        pipe.flush()
    with pytest.raises(RedisCallFailed):
        pipe.close()
    assert silent.bytes_received() == sent_first


def test_a_silent_redis_fails_the_stamp_reads_after_the_timeout(silent):
    read = HgetMany(_client(silent.port), timeout_setting=SETTING)
    keys, key_ends = concatenated([b"k1", b"k2"])
    key_starts = np.concatenate([[0], key_ends[:-1]])
    started = time.monotonic()
    with pytest.raises(RedisCallFailed) as failed:
        read(keys, key_starts, key_ends, np.array([0, 1]), b"_ts:item_popularity")
    assert time.monotonic() - started < TIMEOUT_S + 2.0
    message = str(failed.value)
    assert "2 HGETs" in message and f"within {TIMEOUT_S:g} s" in message and SETTING in message
    read.close()


def test_a_connection_closed_while_replies_are_due_fails_the_pipe():
    peer = SilentPeer(close_after_read=True)
    try:
        pipe = HsetPipe(_client(peer.port), timeout_setting=SETTING)
        pipe.hset_many(*_batch(2, b"a"))
        with pytest.raises(RedisCallFailed, match=r"closed the connection while the replies to 2 HSETs were due"):
            pipe.flush()
        with pytest.raises(RedisCallFailed, match="closed the connection"):
            pipe.flush()  # still failed: a write is lost, whatever later writes would do
    finally:
        peer.close()


def test_no_listener_is_a_connection_error_naming_redis():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(RedisCallFailed, match=rf"could not connect to Redis at 127.0.0.1:{port}"):
        HsetPipe(_client(port), timeout_setting=SETTING)
