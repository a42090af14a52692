"""Booking payloads in the producers' exact bytes, read in one compiled pass (numba).

``events.encode`` (pydantic's ``model_dump_json``) writes every event the same way: compact,
every field in the models' order. Per event, Python's JSON objects and checks cost ~8 µs, more
than Kafka's client spends delivering it. This pass matches that layout byte by byte and reads
the values; it accepts a payload only when its strings are plain printable ASCII (no escapes, so
a character is a byte), its times are pydantic's UTC form (``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``),
its price has at most two decimals (so ``round(price * 100)`` is exactly its pence) and every
value is within the models' bounds. Any other payload, valid or not, is left to the one-by-one
path (``decoding``), which decides as pydantic does; a unit test holds the two to the same
verdicts and values.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from streaming.events import MAX_RENTAL_DAYS

_HEAD = b'{"schema_version":1,"event_id":"'
_ITEM = b'","item_id":"'
_CUSTOMER = b'","customer_id":"'
_BOOKING = b'","booking_id":"'
_TIME = b'","event_time":"'
_CREATED = b'","event_type":"booking_created","rental_start":"'
_CANCELLED = b'","event_type":"booking_cancelled"}'
_DAYS = b'","rental_days":'
_PRICE = b',"price_per_day":'
_CURRENCY = b',"currency":"'
_TAIL = b'"}'
LITERALS = tuple(np.frombuffer(x, np.uint8) for x in (_HEAD, _ITEM, _CUSTOMER, _BOOKING, _TIME, _CREATED, _CANCELLED,
                                                       _DAYS, _PRICE, _CURRENCY, _TAIL))  # fmt: skip
MAX_LENGTHS = np.array([128, 64, 64, 128], np.int64)  # event, item, customer and booking ids (events.py)
STRING_FIELDS = 3  # event_id, item_id, customer_id are returned; booking_id only checked
DAY_US = 86_400_000_000
BAD = -(1 << 62)  # not a date


@njit(cache=True, inline="always")
def _literal(buf, pos, stop, lit):
    if pos < 0 or pos + len(lit) > stop:
        return -1
    for i in range(len(lit)):
        if buf[pos + i] != lit[i]:
            return -1
    return pos + len(lit)


@njit(cache=True, inline="always")
def _string_end(buf, pos, stop):
    """Where a plain printable-ASCII JSON string starting at ``pos`` ends (its closing quote)."""
    if pos < 0:
        return -1
    while pos < stop:
        c = buf[pos]
        if c == 34:  # "
            return pos
        if c < 32 or c > 126 or c == 92:  # control, non-ASCII or an escape: not this pass's
            return -1
        pos += 1
    return -1


@njit(cache=True, inline="always")
def _number(buf, pos, n):
    """The ``n`` ASCII digits at ``pos`` as an integer, or -1."""
    value = 0
    for i in range(n):
        d = np.int64(buf[pos + i]) - 48
        if d < 0 or d > 9:
            return -1
        value = value * 10 + d
    return value


@njit(cache=True, inline="always")
def _days_from_civil(year, month, day):
    y = year - (1 if month <= 2 else 0)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    return era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468


@njit(cache=True, inline="always")
def _date(buf, pos):
    """Days since the epoch of a valid ``YYYY-MM-DD`` at ``pos``, or ``BAD``."""
    if buf[pos + 4] != 45 or buf[pos + 7] != 45:  # -
        return BAD
    year, month, day = _number(buf, pos, 4), _number(buf, pos + 5, 2), _number(buf, pos + 8, 2)
    if year < 1 or month < 1 or month > 12 or day < 1:
        return BAD
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        month_days = 29 if leap else 28
    elif month == 4 or month == 6 or month == 9 or month == 11:
        month_days = 30
    else:
        month_days = 31
    if day > month_days:
        return BAD
    return _days_from_civil(year, month, day)


@njit(cache=True)
def scan(buf, ends, literals, max_lengths):
    """For each payload (``buf`` up to ``ends[i]``): whether this pass accepts it, and its values.

    Returns (ok, created, time_us, price_pence, rental_days, strings, string_ends): the event,
    item and customer ids (f = 0, 1, 2) of accepted payloads are copied one after another into
    ``strings[f]``, ``string_ends[f, i]`` being where payload i's ends there."""
    head, item, customer, booking, time, created_lit, cancelled_lit, days_lit, price_lit, currency_lit, tail = literals
    n = len(ends)
    ok = np.zeros(n, np.bool_)
    created = np.zeros(n, np.bool_)
    time_us = np.zeros(n, np.int64)
    pence = np.zeros(n, np.int64)
    days = np.zeros(n, np.int64)
    strings = np.empty((STRING_FIELDS, len(buf)), np.uint8)
    string_ends = np.zeros((STRING_FIELDS, n), np.int64)
    out = np.zeros(STRING_FIELDS, np.int64)
    start = 0
    spans = np.zeros((4, 2), np.int64)
    for i in range(n):
        stop = ends[i]
        pos = start
        start = stop
        labels = (head, item, customer, booking)
        good = True
        for f in range(4):
            pos = _literal(buf, pos, stop, labels[f])
            end = _string_end(buf, pos, stop)
            if end < 0 or end == pos or end - pos > max_lengths[f]:
                good = False
                break
            spans[f, 0], spans[f, 1] = pos, end
            pos = end
        if not good:
            continue
        pos = _literal(buf, pos, stop, time)
        end = _string_end(buf, pos, stop)
        if end < 0:
            continue
        length = end - pos
        if length != 20 and length != 27:
            continue
        day = _date(buf, pos)
        if day == BAD:
            continue
        if buf[pos + 10] != 84 or buf[pos + 13] != 58 or buf[pos + 16] != 58 or buf[pos + length - 1] != 90:  # T : : Z
            continue
        hour, minute, second = _number(buf, pos + 11, 2), _number(buf, pos + 14, 2), _number(buf, pos + 17, 2)
        if hour < 0 or hour > 23 or minute < 0 or minute > 59 or second < 0 or second > 59:
            continue
        micros = 0
        if length == 27:
            if buf[pos + 19] != 46:  # .
                continue
            micros = _number(buf, pos + 20, 6)
            if micros < 0:
                continue
        at = (((day * 24 + hour) * 60 + minute) * 60 + second) * 1_000_000 + micros
        pos = end
        is_created = False
        after = _literal(buf, pos, stop, cancelled_lit)
        if after == stop:
            pass
        else:
            pos = _literal(buf, pos, stop, created_lit)
            if pos < 0 or pos + 10 > stop:
                continue
            start_day = _date(buf, pos)
            if start_day == BAD or start_day < at // DAY_US:
                continue
            pos = _literal(buf, pos + 10, stop, days_lit)
            if pos < 0:
                continue
            digits = 0
            while pos + digits < stop and 48 <= buf[pos + digits] <= 57:
                digits += 1
            if digits == 0 or digits > 2 or (digits == 2 and buf[pos] == 48):
                continue
            rental_days = _number(buf, pos, digits)
            if rental_days < 1 or rental_days > MAX_RENTAL_DAYS:
                continue
            pos = _literal(buf, pos + digits, stop, price_lit)
            if pos < 0:
                continue
            digits = 0
            while pos + digits < stop and 48 <= buf[pos + digits] <= 57:
                digits += 1
            if digits == 0 or digits > 5 or (digits > 1 and buf[pos] == 48) or pos + digits >= stop:
                continue
            whole = _number(buf, pos, digits)
            pos += digits
            if buf[pos] != 46:  # a price always has a fraction: pydantic writes floats with one
                continue
            pos += 1
            decimals = 0
            while pos + decimals < stop and 48 <= buf[pos + decimals] <= 57:
                decimals += 1
            if decimals == 0 or decimals > 2:
                continue
            fraction = _number(buf, pos, decimals) * (10 if decimals == 1 else 1)
            price = whole * 100 + fraction
            if price <= 0:
                continue
            pos = _literal(buf, pos + decimals, stop, currency_lit)
            end = _string_end(buf, pos, stop)
            if end < 0 or end - pos != 3 or _literal(buf, end, stop, tail) != stop:
                continue
            is_created = True
            pence[i], days[i] = price, rental_days
        ok[i], created[i], time_us[i] = True, is_created, at
        for f in range(STRING_FIELDS):
            o = out[f]
            for j in range(spans[f, 0], spans[f, 1]):
                strings[f, o] = buf[j]
                o += 1
            out[f] = o
            string_ends[f, i] = o
    return ok, created, time_us, pence, days, strings, string_ends


def warm_up() -> None:
    """Load (or compile) the pass now rather than on the first poll."""
    payload = np.frombuffer(_HEAD + b"e" + _ITEM + b"i" + _CUSTOMER + b"c" + _BOOKING + b"b" + _TIME
                            + b"2026-01-02T03:04:05Z" + _CANCELLED, np.uint8)  # fmt: skip
    ok = scan(payload, np.array([len(payload)], np.int64), LITERALS, MAX_LENGTHS)[0]
    if not ok[0]:
        raise RuntimeError("canonical_scan does not accept a canonical cancellation")
