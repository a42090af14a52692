"""QuoteBatcher: concurrent requests share one pricing call, split at the item limit, and each
request gets its own answer or its own error."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from bento_service.batching import QuoteBatcher
from bento_service.pricing import Priced, QuoteInput, Unavailable


class CountingPricer:
    """Prices an item at its number; remembers how the asks were grouped into calls."""

    def __init__(self, fail: bool = False):
        self.calls: list[list[int]] = []
        self.fail = fail

    def quote_asks(self, asks):
        self.calls.append([len(ask.requests) for ask in asks])
        if self.fail:
            raise Unavailable("redis is down")
        return [Priced([{"price_per_day": float(r.item_id)} for r in ask.requests], []) for ask in asks]


def _ask(*items: int) -> list[QuoteInput]:
    return [QuoteInput(str(i), None, date(2027, 1, 1), 2) for i in items]


def _run(batcher: QuoteBatcher, asks: list[list[QuoteInput]]):
    async def main():
        return await asyncio.gather(*(batcher.quote(a, "http", 0.0) for a in asks), return_exceptions=True)

    return asyncio.run(main())


def test_concurrent_requests_share_one_call_and_each_gets_its_own_prices():
    pricer = CountingPricer()
    results = _run(QuoteBatcher(pricer, max_items=100), [_ask(1), _ask(2, 3), _ask(4)])
    assert pricer.calls == [[1, 2, 1]]
    assert [[q["price_per_day"] for q in r.quotes] for r in results] == [[1.0], [2.0, 3.0], [4.0]]


def test_the_item_limit_splits_calls_but_never_a_request():
    pricer = CountingPricer()
    results = _run(QuoteBatcher(pricer, max_items=3), [_ask(1, 2), _ask(3, 4), _ask(5), _ask(6, 7, 8, 9)])
    assert pricer.calls == [[2], [2, 1], [4]]  # a request over the limit still goes whole, alone
    assert [len(r.quotes) for r in results] == [2, 2, 1, 4]


def test_a_failed_call_fails_each_of_its_requests_and_the_next_call_runs():
    pricer = CountingPricer(fail=True)
    batcher = QuoteBatcher(pricer, max_items=100)
    results = _run(batcher, [_ask(1), _ask(2)])
    assert all(isinstance(r, Unavailable) and "redis is down" in str(r) for r in results)
    pricer.fail = False
    assert _run(batcher, [_ask(5)])[0].quotes == [{"price_per_day": 5.0}]
    assert pricer.calls == [[1, 1], [1]]


def test_a_lone_request_is_priced_without_waiting_for_company():
    pricer = CountingPricer()

    async def main():
        return await asyncio.wait_for(QuoteBatcher(pricer, 100).quote(_ask(7), "grpc", 0.0), timeout=0.05)

    assert asyncio.run(main()).quotes == [{"price_per_day": 7.0}]


@pytest.mark.parametrize("cancel_first", [True, False])
def test_a_request_whose_client_left_is_not_priced(cancel_first):
    pricer = CountingPricer()

    async def main():
        batcher = QuoteBatcher(pricer, 100)
        first = asyncio.ensure_future(batcher.quote(_ask(1), "http", 0.0))
        second = asyncio.ensure_future(batcher.quote(_ask(2), "http", 0.0))
        await asyncio.sleep(0)  # both are waiting now, the flush not yet run
        (first if cancel_first else second).cancel()
        return await asyncio.gather(first, second, return_exceptions=True)

    results = asyncio.run(main())
    assert pricer.calls == [[1]]
    kept = results[1] if cancel_first else results[0]
    assert kept.quotes == [{"price_per_day": 2.0 if cancel_first else 1.0}]
