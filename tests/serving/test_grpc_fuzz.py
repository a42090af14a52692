"""The gRPC API fuzzed against the served Bento: random messages, valid and not, and random bytes
as the request body. Every answer is OK, INVALID_ARGUMENT or NOT_FOUND, never UNKNOWN, INTERNAL
or an answer the client cannot read; and the service agrees with the request models (the HTTP
API's schema): a message they accept is priced (or its unknown item is NOT_FOUND), one they
refuse is INVALID_ARGUMENT naming a field."""

from __future__ import annotations

from datetime import date, timedelta

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bento_service.protos import pricing_pb2
from bento_service.schemas import BATCH_LIMIT, BatchRequest, QuoteRequest, start_window, utc_today

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
PREDICT = "/rental.pricing.v1.PricingService/Predict"
PREDICT_BATCH = "/rental.pricing.v1.PricingService/PredictBatch"
INT32 = st.integers(-(2**31), 2**31 - 1)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def channel(served):
    with grpc.insecure_channel(served.grpc_address) as opened:
        yield opened


def _requests(world) -> st.SearchStrategy[pricing_pb2.PredictRequest]:
    first, last = start_window(utc_today())
    valid_day = st.dates(first, last).map(date.isoformat)
    edge_day = st.sampled_from([first - timedelta(days=1), last + timedelta(days=1), date(2027, 2, 28)]).map(str)
    return st.builds(
        pricing_pb2.PredictRequest,
        item_id=st.one_of(st.sampled_from(world.items), st.text(max_size=70), st.just("")),
        customer_id=st.one_of(st.just(""), st.sampled_from(world.customers), st.text(max_size=70)),
        rental_start=st.one_of(valid_day, edge_day, st.dates().map(date.isoformat), st.text(max_size=24)),
        rental_days=st.one_of(st.integers(1, 60), INT32),
    )


def _fields(message: pricing_pb2.PredictRequest) -> dict:
    return {"item_id": message.item_id, "customer_id": message.customer_id or None,
            "rental_start": message.rental_start, "rental_days": message.rental_days}  # fmt: skip


def _valid(model, value) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True


def _call(channel, method: str, message) -> tuple[grpc.StatusCode, bytes | str]:
    try:
        return grpc.StatusCode.OK, channel.unary_unary(method)(message.SerializeToString(), timeout=10)
    except grpc.RpcError as error:
        return error.code(), error.details()


def test_random_messages_get_the_answer_the_request_models_give(channel, world):
    catalogue = set(world.items)

    @given(request=_requests(world))
    @FUZZ
    def predict(request):
        code, answer = _call(channel, PREDICT, request)
        if not _valid(QuoteRequest, _fields(request)):
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (request, code, answer)
            assert answer and len(answer.encode()) <= 2_000
        elif request.item_id in catalogue:
            assert code == grpc.StatusCode.OK, (request, code, answer)
            quote = pricing_pb2.Quote.FromString(answer)
            assert quote.item_id == request.item_id and quote.price_per_day > 0
        else:
            assert code in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND), (request, code, answer)

    predict()


def test_random_batches_get_the_answer_the_request_models_give(channel, world):
    catalogue = set(world.items)

    @given(items=st.lists(_requests(world), max_size=8) | st.lists(_requests(world), min_size=BATCH_LIMIT - 1,
                                                                     max_size=BATCH_LIMIT + 2))  # fmt: skip
    @settings(FUZZ, max_examples=80)
    def predict_batch(items):
        code, answer = _call(channel, PREDICT_BATCH, pricing_pb2.PredictBatchRequest(items=items))
        if not _valid(BatchRequest, {"items": [_fields(r) for r in items]}):
            # every invalid item is named, however many: the details are cut to fit a header
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (len(items), code, answer)
            assert answer and len(answer.encode()) <= 2_000
            return
        assert code == grpc.StatusCode.OK, (items, code, answer)
        priced = pricing_pb2.PredictBatchResponse.FromString(answer)
        assert [q.item_id for q in priced.quotes] == [r.item_id for r in items if r.item_id not in priced.not_found]
        assert not catalogue & set(priced.not_found)

    predict_batch()


@pytest.mark.parametrize("method", [PREDICT, PREDICT_BATCH])
def test_random_bytes_as_the_body_are_invalid_argument_or_read_as_a_message(channel, world, method):
    valid = pricing_pb2.PredictRequest(item_id=world.items[0], rental_start=utc_today().isoformat(), rental_days=3)
    example = valid.SerializeToString()
    if method == PREDICT_BATCH:
        example = pricing_pb2.PredictBatchRequest(items=[valid, valid]).SerializeToString()

    def damaged(edits: list[tuple[int, int]]) -> bytes:
        body = bytearray(example)
        for at, byte in edits:
            body[at % len(body)] = byte
        return bytes(body)

    bodies = st.one_of(st.binary(max_size=400), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                         min_size=1, max_size=4).map(damaged))  # fmt: skip

    @given(body=bodies)
    @FUZZ
    def sent(body):
        try:
            channel.unary_unary(method)(body, timeout=10)
        except grpc.RpcError as error:
            assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), (body, error)
            assert error.details()

    sent()
    with pytest.raises(grpc.RpcError) as error:
        channel.unary_unary(method)(b"\x0a\x02\xff\xfe", timeout=10)  # a string field that is not UTF-8
    assert (
        error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a rental.pricing.v1." in error.value.details()
    )
