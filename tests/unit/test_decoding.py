"""The consumer's fast decoder accepts only what pydantic accepts, with the same values."""

from __future__ import annotations

import itertools
import random

import orjson

from streaming.consumer import decoding
from streaming.consumer.decoding import _fast, as_tuple, decode_args, decode_many
from streaming.events import EventError, decode, encode
from streaming.features.event_batch import event_key
from streaming.simulator.replay import history_events
from streaming.wire.packed import concatenated

CREATED = {"schema_version": 1, "event_id": "e1", "item_id": "item_1", "customer_id": "cust_1", "booking_id": "b1",
           "event_time": "2026-01-02T03:04:05.123456Z", "event_type": "booking_created",
           "rental_start": "2026-01-05", "rental_days": 3, "price_per_day": 12.5, "currency": "GBP"}  # fmt: skip
CANCELLED = {k: CREATED[k] for k in ("schema_version", "event_id", "item_id", "customer_id", "booking_id",
                                     "event_time")} | {"event_type": "booking_cancelled"}  # fmt: skip
ODD_VALUES = [None, "", "x" * 65, "x" * 129, 0, -1, 1, 1.5, 3.0, True, 60, 61, 99_999.99, 100_000, 1e300, "GBPX",
              "2026-01-02", "2026-01-01", "2026-01-02T03:04:05", "2026-01-02T03:04:05+01:00", "2026-01-02T23:30:00-05:00",
              "2026-01-02 03:04:05Z", "2026-01-02T03:04:05z", "2026-01-02T03:04:05.1234567Z", "2026-13-01T00:00:00Z",
              "2026-01-02T24:00:00Z", "2026-01-02T03:04:60Z", "2026-01-02T03:04:05+24:00", "20260102T030405Z",
              "1767323045", 1767323045, "booking_created", "booking_cancelled", "booking_moved", [], {}]  # fmt: skip


def _slow(payload: bytes) -> tuple | None:
    try:
        return as_tuple(decode(payload))
    except EventError:
        return None


def _corpus() -> list[bytes]:
    out = [b"", b"{", b"null", b"[]", b'"text"', b"\xff\xfe", b'{"event_type": "booking_created"}']
    for base in (CREATED, CANCELLED):
        out.append(orjson.dumps(base))
        for key in base:
            out.append(orjson.dumps({k: v for k, v in base.items() if k != key}))  # each field missing
            out += [orjson.dumps(base | {key: value}) for value in ODD_VALUES]  # each field odd
        out.append(orjson.dumps(base | {"extra": 1}))
        out.append(orjson.dumps(base | {"schema_version": 2}))
    for time in ("2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2100-02-29T12:00:00Z", "2000-02-29T23:59:59.999999Z",
                 "1969-12-31T23:59:59.000001Z", "0001-01-01T00:00:00Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                 "2026-04-31T00:00:00Z", "2026-01-02T03:04:05.000000Z", "2026-01-02T03:04:05.1Z", "2026-01-02T3:04:05Z",
                 "２０２６-01-02T03:04:05Z", "2026-01-02T03:04:05.12345xZ"):  # fmt: skip
        out.append(orjson.dumps(CREATED | {"event_time": time, "rental_start": "9999-12-31"}))
        out.append(orjson.dumps(CANCELLED | {"event_time": time}))
    for start in ("2026-02-30", "2026-1-05", "2026-01-05 ", "2026-01-02", "2026-01-01"):
        out.append(orjson.dumps(CREATED | {"rental_start": start}))
    out.append(orjson.dumps(CREATED | {"event_type": "booking_cancelled"}))  # a created event's fields, another kind
    out.append(orjson.dumps(CANCELLED | {"event_type": "booking_created"}))
    out.append(orjson.dumps({k: CREATED[k] for k in reversed(CREATED)}))  # valid, in another order
    for time, start in itertools.product(["2026-01-02T23:30:00-05:00", "2026-01-03T00:30:00+02:00"],
                                         ["2026-01-02", "2026-01-03"]):  # fmt: skip
        out.append(orjson.dumps(CREATED | {"event_time": time, "rental_start": start}))  # start vs the UTC date
    return out


def test_the_fast_path_never_accepts_what_pydantic_rejects_nor_changes_a_value():
    corpus, wrong = _corpus(), []
    for payload in corpus:
        slow, fast = _slow(payload), _fast(payload)
        if fast is not None and fast != slow:
            wrong.append((payload, "fast path", fast, "pydantic", slow))
        try:
            got = decode_args(payload)
        except EventError:
            got = None
        if got != slow:
            wrong.append((payload, "decode_args", got, "pydantic", slow))
    assert len(corpus) > 600 and not wrong, wrong[:5]


def test_every_event_the_producers_write_takes_the_fast_path(small_history, monkeypatch):
    payloads = [encode(event) for event in itertools.islice(history_events(small_history.bookings), 3_000)]
    assert {orjson.loads(p)["event_type"] for p in payloads} == {"booking_created", "booking_cancelled"}
    for payload in payloads:
        assert _fast(payload) is not None and _fast(payload) == _slow(payload)
    monkeypatch.setattr(decoding, "decode_args", None)  # decode_many must not need the one-by-one path
    batch, owner, errors = decode_many(*concatenated(payloads))
    assert owner == list(range(len(payloads))) and not errors
    assert batch.time_us.tolist() == [_slow(p)[4] for p in payloads]


def test_decode_many_gives_each_payload_pydantic_s_verdict_in_order():
    corpus = _corpus()
    batch, owner, errors = decode_many(*concatenated(corpus))
    expected = [(i, _slow(payload)) for i, payload in enumerate(corpus)]
    valid = [(i, event) for i, event in expected if event is not None]
    columns = [c.tolist() for c in (batch.item_id, batch.customer_id, batch.time_us, batch.price_pence,
                                    batch.rental_days, batch.created)]  # fmt: skip
    got = [(i, tuple(row)) for i, row in zip(owner, zip(*columns, strict=True), strict=True)]
    want = [(i, (e[2], e[3], e[4], e[5], e[6], e[0] == "booking_created")) for i, e in valid]
    assert got == want
    assert batch.event_key.tolist() == [decode_many(*concatenated([corpus[i]]))[0].event_key[0] for i, _ in valid]
    assert [i for i, _ in errors] == [i for i, event in expected if event is None]
    assert all(reason for _, reason in errors)


def test_byte_level_mutants_of_real_payloads_get_pydantic_s_verdict(small_history):
    """The compiled pass reads bytes, so mutate bytes: each mutant alone and all in one poll."""
    rng = random.Random(11)
    payloads = [encode(event) for event in itertools.islice(history_events(small_history.bookings), 300)]
    alphabet = b'0123456789.:-TZz"\\,{}[] e\xc3\xa9\x00\x7f'
    mutants = []
    for payload in payloads:
        for _ in range(10):
            at, b = rng.randrange(len(payload)), bytes([rng.choice(alphabet)])
            mutants.append(rng.choice([payload[:at] + b + payload[at + 1 :], payload[:at] + payload[at + 1 :],
                                       payload[:at] + b + payload[at:], payload[:at]]))  # fmt: skip
    batch, owner, errors = decode_many(*concatenated(mutants))
    expected = [_slow(m) for m in mutants]
    got = dict(zip(owner, zip(batch.time_us.tolist(), batch.price_pence.tolist(), batch.rental_days.tolist(),
                              batch.item_id.tolist(), batch.customer_id.tolist(), batch.event_key.tolist(),
                              batch.created.tolist(), strict=True), strict=True))  # fmt: skip
    wrong = [(m, got.get(i), e) for i, (m, e) in enumerate(zip(mutants, expected, strict=True))
             if (e is None) != (i not in got) or (e is not None and got[i] != (e[4], e[5], e[6], e[2], e[3], event_key(e[1]), e[0] == "booking_created"))]  # fmt: skip
    assert not wrong, wrong[:3]
    assert [i for i, _ in errors] == [i for i, e in enumerate(expected) if e is None]
    assert sum(e is None for e in expected) > 1_000 and sum(e is not None for e in expected) > 300


HOSTILE = {
    "deep array": b"[" * 100_000,
    "deep object": b'{"a":' * 100_000,
    "deep, under json's limit": b"[" * 900 + b"]" * 900,
    "a 5,000-digit integer": orjson.dumps(CREATED)[:-1] + b', "rental_days": 1' + b"0" * 5_000 + b"}",
    "a 5,000-digit version": b'{"schema_version": ' + b"9" * 5_000 + b"}",
    "a float past double": orjson.dumps(CREATED).replace(b'"rental_days":3', b'"rental_days":1e999'),
    "invalid UTF-8": orjson.dumps(CREATED).replace(b"item_1", b"item_\xff\xfe"),
    "a lone surrogate": orjson.dumps(CREATED).replace(b"item_1", b"item_\\ud800"),
    "null value": b"",
    "NUL bytes": b"\x00" * 1_000,
    "two megabytes of text": b'{"event_id": "' + "é".encode() * 1_000_000 + b'"}',
    "NaN": orjson.dumps(CREATED).replace(b"12.5", b"NaN"),
}


def test_no_payload_raises_out_of_decode_many_and_every_one_has_a_reason():
    good = orjson.dumps(CREATED)
    payloads = [good, *HOSTILE.values(), good]
    batch, owner, errors = decode_many(*concatenated(payloads))
    assert owner == [0, len(payloads) - 1] and batch.item_id.tolist() == ["item_1", "item_1"]
    reasons = dict(errors)
    assert sorted(reasons) == list(range(1, len(payloads) - 1))
    assert all(0 < len(reason) <= 1_000 for reason in reasons.values()), reasons
    assert reasons[1] == "malformed JSON: nested too deeply"


def test_decode_raises_only_event_errors_whatever_the_bytes():
    for name, payload in HOSTILE.items():
        try:
            decode(payload)
        except EventError:
            continue
        raise AssertionError(f"{name}: decoded as an event")
