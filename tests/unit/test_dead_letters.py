"""A dead letter is bounded whatever the payload, and keeps what identifies the original."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from streaming.consumer.dead_letters import MAX_REASON_CHARS, letter_bytes
from streaming.wire.record_blocks import Record

LIMIT = 65_536


def _letter(value: bytes, reason: str = "malformed JSON: x", key: bytes | None = b"item_1") -> dict:
    out = letter_bytes(Record("bookings", 3, 41, key, value), reason, LIMIT)
    assert len(out) <= LIMIT
    return json.loads(out)


def test_a_small_payload_is_kept_exactly():
    letter = _letter(b'{"event_id": "\xc3\xa9"}')
    assert letter["payload"] == '{"event_id": "é"}' and letter["payload_encoding"] == "utf-8"
    assert "payload_truncated" not in letter
    assert letter["source"] == {"topic": "bookings", "partition": 3, "offset": 41}
    assert _letter(b"\xff\x00")["payload"] == base64.b64encode(b"\xff\x00").decode()


@pytest.mark.parametrize(
    "value",
    [
        "é".encode() * 200_000,  # 400 KB of non-ASCII text: ~6x once JSON-escaped
        "\U0001f600".encode() * 100_000,  # 4-byte characters: surrogate-pair escapes
        b"\x01" * 300_000,  # control characters: \u0001 each
        b"\xff" * 3_000_000,  # not UTF-8: base64
        b"x" * 5_000_000,
    ],
)
def test_a_large_payload_is_truncated_with_its_length_and_hash(value):
    letter = _letter(value, reason="r" * 100_000)
    assert letter["payload_truncated"] is True
    assert letter["payload_length"] == len(value)
    assert letter["payload_sha256"] == hashlib.sha256(value).hexdigest()
    assert len(letter["reason"]) == MAX_REASON_CHARS
    kept = (base64.b64decode(letter["payload"]) if letter["payload_encoding"] == "base64"
            else letter["payload"].encode())  # fmt: skip
    assert value.startswith(kept) and len(kept) > LIMIT // 8  # a useful prefix, cut at a character


def test_a_huge_key_is_named_by_length_and_hash():
    key = b"k" * 10_000
    for value in (b"y", b"y" * 100_000):
        letter = _letter(value, key=key)
        assert letter["key_length"] == 10_000 and letter["key_sha256"] == hashlib.sha256(key).hexdigest()
