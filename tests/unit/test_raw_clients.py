"""The benchmark's raw gRPC client gets what grpcio's own stub gets, and notices failures."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from bento_service.protos import pricing_pb2, pricing_pb2_grpc
from tests.benchmarks.raw_clients import RawGrpc

PREDICT = f"/{pricing_pb2.DESCRIPTOR.services_by_name['PricingService'].full_name}/Predict"


class Echo(pricing_pb2_grpc.PricingServiceServicer):
    def Predict(self, request, context):  # the proto's method name
        if request.item_id == "missing":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such item")
        return pricing_pb2.Quote(item_id=request.item_id, price_per_day=request.rental_days * 1.5, currency="EUR")


@pytest.fixture(scope="module")
def address():
    server = grpc.server(futures.ThreadPoolExecutor(2))
    pricing_pb2_grpc.add_PricingServiceServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_raw_calls_equal_the_stubs_past_the_first_flow_control_window(address):
    stub = pricing_pb2_grpc.PricingServiceStub(grpc.insecure_channel(address))
    raw = RawGrpc(address)
    sent = 0
    for i in range(1_500):  # about 100 KB of requests: more than the 64 KiB the connection starts with
        request = pricing_pb2.PredictRequest(item_id=f"item_{i:05d}_" + "x" * 40, rental_start="2026-12-01",
                                             rental_days=i % 30 + 1)  # fmt: skip
        call = raw.request(PREDICT, request.SerializeToString())
        sent += len(call[1])
        assert pricing_pb2.Quote.FromString(raw.send(call)) == stub.Predict(request)
    assert sent > 65_535


def test_a_failed_call_raises_and_the_connection_goes_on(address):
    raw = RawGrpc(address)
    missing = pricing_pb2.PredictRequest(item_id="missing", rental_start="2026-12-01", rental_days=2)
    with pytest.raises(RuntimeError, match="without one whole message"):
        raw.send(raw.request(PREDICT, missing.SerializeToString()))
    ok = pricing_pb2.PredictRequest(item_id="a", rental_start="2026-12-01", rental_days=2)
    assert pricing_pb2.Quote.FromString(raw.send(raw.request(PREDICT, ok.SerializeToString()))).price_per_day == 3.0
