"""`rental demo quotes`: the pricing service quoting while bookings stream in.

Serves the Bento (HTTP and gRPC) and runs the feature consumer, streams background bookings
plus a burst of bookings of one item, and every couple of seconds quotes that item over both
protocols: as its popularity rises in Redis, its next quote moves.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rental.settings import get_settings

console = Console()


def quotes(
    seconds: Annotated[float, typer.Option(help="How long to stream.")] = 20.0,
    rate: Annotated[float, typer.Option(help="Background bookings per second.")] = 50.0,
    spike: Annotated[float, typer.Option(help="Extra bookings per second of the watched item.")] = 1.0,
) -> None:
    """Quote one item over HTTP and gRPC while its bookings stream in, and watch the price move."""
    from bento_service.protos import pricing_pb2, pricing_pb2_grpc
    from rental.demo.stream import start_consumer, stop_consumer, stream_with_spike, watched_item
    from rental.servers import pricing as pricing_server
    from streaming.feature_store import feature_store

    settings = get_settings()
    world, bookings, item_id, customer_id = watched_item(settings, busiest_share=0.8)
    start = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()
    request = {"item_id": item_id, "customer_id": customer_id, "rental_start": start, "rental_days": 3}
    store = feature_store(settings)
    popularity = [f"item_popularity:{name}" for name in ("bookings_7d", "bookings_30d")]

    with console.status("starting the pricing service (bentoml serve) ..."):
        env = {
            k: v
            for k, v in os.environ.items()
            if k.startswith("RENTAL_") or k in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
        }
        bento = pricing_server.start(env, Path(tempfile.gettempdir()) / f"rental-demo-bento-{os.getpid()}.log")
    table = Table(title=f"quotes for {item_id} ({request['rental_days']} days from {start}) as its bookings stream in")
    for column in ("t (s)", "bookings 7d", "30d", "HTTP £/day", "gRPC £/day", "features as of", "model"):
        table.add_column(column, justify="right")
    http = bento.http_client(timeout=10)  # HTTPS and the API token when the settings ask for them
    stub = pricing_pb2_grpc.PricingServiceStub(bento.grpc_channel())
    agreed: list[bool] = []

    def row(elapsed: float) -> None:
        quote = http.post("/predict", json=request).json()
        over_grpc = stub.Predict(pricing_pb2.PredictRequest(**request), metadata=bento.metadata)
        agreed.append(round(quote["price_per_day"], 2) == round(over_grpc.price_per_day, 2))
        counts = store.get_online_features(features=popularity, entity_rows=[{"item_id": item_id}]).to_dict()
        table.add_row(f"{elapsed:.0f}", str(counts["bookings_7d"][0]), str(counts["bookings_30d"][0]),
                      f"{quote['price_per_day']:.2f}", f"{over_grpc.price_per_day:.2f}",
                      str(quote["features_as_of"])[11:19], quote["model_version"])  # fmt: skip

    consumer = None
    try:
        consumer = start_consumer(settings)  # as `rental demo live` starts it
        sent = stream_with_spike(settings, world, bookings, item_id, customer_id, rate=rate, spike=spike,
                                 seconds=seconds, tail_s=6, every=row, price_per_day=150.0, lead_days=5)  # fmt: skip
    finally:
        if consumer is not None:
            stop_consumer(consumer)
        pricing_server.stop(bento)
    console.print(table)
    console.print(f"{sent} bookings of {item_id} on top of {rate:g}/s background bookings for {seconds:g} s; "
                  f"HTTP and gRPC gave the same price in {sum(agreed)} of {len(agreed)} rows (the two calls are made "
                  "one after the other, so a booking landing between them moves the second)")  # fmt: skip
