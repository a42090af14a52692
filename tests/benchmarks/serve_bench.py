"""Serving figures: ``python -m tests.benchmarks.serve_bench`` (``make bench-serve``).

A trained world (2,000 items; cached under the temp dir, Redis db 14) is served by
``bentoml serve`` exactly as ``make serve`` runs it, next to ``feast serve --max-requests 0``
reading the same feature service from the same Redis. Measured in one run, side by side:

- single-item quotes at a steady 100 requests/s over HTTP and gRPC, and ``feast serve``
  returning the features alone for the same items at the same rate, in interleaved rounds so
  the machine's noise falls on all three alike: p50 and p99;
- the most quotes per second over HTTP with concurrent keep-alive clients;
- p99 of a batch of 100 items; the Bento's memory (RSS of its processes).

HTTP and gRPC are driven by minimal raw clients (``raw_clients``: pre-encoded requests on one
kept-alive connection), so the client's own cost stays small and alike for both protocols, the
Bento and ``feast serve``. grpcio's own stub is measured beside them (``grpc_stub_*``): it adds
about 0.3 ms of client CPU a call, which is the client's, not the service's.
``RENTAL_SERVE_*`` settings of this environment reach the Bento, so with API tokens or TLS set
every client sends the first token and speaks TLS, and the figures include their cost.
Prints ONE JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import psutil
import redis as redis_py
import typer
import yaml
from rich.console import Console

from rental.servers import pricing as pricing_server
from rental.settings import get_settings
from tests.benchmarks.raw_clients import RawGrpc, RawHttp
from tests.worlds.serving_world import build, settings_of, world_env

stderr = Console(stderr=True)
REDIS_DB = 14
RATE = 100.0


def _paced(call, payloads: list, rate: float) -> list[float]:
    """Latencies (ms) of ``call(payload)`` started at a steady ``rate`` per second."""
    out, start = [], time.perf_counter()
    for i, payload in enumerate(payloads):
        ahead = start + i / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
        t = time.perf_counter()
        call(payload)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


def _world(base):
    """The cached world (built once: about two minutes), its item categories, and its env."""
    data_dir = Path(tempfile.gettempdir()) / "rental-serve-bench"
    marker = data_dir / "world.json"
    redis_url = base.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    if not (marker.exists() and redis_py.Redis.from_url(redis_url).dbsize() > 0):
        stderr.print("building the serving world (simulate, backfill, materialize, train twice) ...")
        world = build(data_dir, base, REDIS_DB, items=2_000, bookings=30_000, seed=11)
        marker.write_text(json.dumps({"env": world.env, "items": world.items, "customers": world.customers}))
    else:
        stderr.print(f"reusing {data_dir}")
    saved = json.loads(marker.read_text())
    settings = settings_of(saved["env"])
    import pandas as pd

    catalogue = pd.read_parquet(settings.history_dir / "items.parquet", columns=["item_id", "category"])
    return settings, saved, dict(zip(catalogue["item_id"], catalogue["category"], strict=True))


def _feast_serve(settings, port: int, log: Path) -> subprocess.Popen:
    """`feast serve` on a copy of the repo config pointing at the world's registry and Redis."""
    from streaming.feature_store.store import repo_config

    repo = settings.data_dir / "feast_serve_repo"
    repo.mkdir(exist_ok=True)
    config = repo_config(settings)
    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "feature_repo" / "feature_store.yaml").read_text())
    raw["registry"]["path"] = config.registry.path
    raw["online_store"]["connection_string"] = config.online_store.connection_string
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(raw))
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "feast"), "-c", str(repo), "serve", "-h", "127.0.0.1", "-p", str(port),
         "--max-requests", "0", "--no-access-log", "-w", "1"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def _wait_http(address: str, path: str, body: bytes, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            client = RawHttp(address)
            if client.send(client.request(path, body)) == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{address}{path} did not answer 200 within {timeout_s:.0f} s")


def _throughput(connect, raws: list[bytes], clients: int, seconds: float) -> float:
    """Quotes a second of ``clients`` connections made by ``connect()``, each sending as fast as
    it is answered."""
    done = [0] * clients
    stop_at = time.perf_counter() + seconds

    def run(i: int) -> None:
        client, n = connect(), 0
        while time.perf_counter() < stop_at:
            client.send(raws[n % len(raws)])
            n += 1
        done[i] = n

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - started)


def _rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    return round(sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20, 1)


def main(
    seconds: float = typer.Option(
        60.0,
        help="Steady-rate seconds per protocol (in rounds of 2 s): 6,000 requests each, so p99 rests on 60 of them.",
    ),
    clients: int = typer.Option(8, help="Concurrent keep-alive clients for the throughput phase."),
    batches: int = typer.Option(100, help="Batches of 100 items."),
) -> None:
    from bento_service.protos import pricing_pb2, pricing_pb2_grpc

    base = get_settings()
    settings, saved, category = _world(base)
    rng = random.Random(3)
    start = (datetime.now(UTC).date() + timedelta(days=14)).isoformat()
    items, customers = saved["items"], saved["customers"]
    requests = [{"item_id": rng.choice(items), "customer_id": rng.choice(customers), "rental_start": start,
                 "rental_days": rng.randint(1, 10)} for _ in range(2_000)]  # fmt: skip
    workdir = settings.data_dir / "bench-logs"
    workdir.mkdir(exist_ok=True)
    serving = {k: v for k, v in os.environ.items() if k.startswith("RENTAL_SERVE_")}  # e.g. RENTAL_SERVE_WORKERS
    env = world_env(settings.data_dir, settings.redis_url) | serving
    stderr.print("starting bentoml serve and feast serve ...")
    bento = pricing_server.start(env, workdir / "bento.log")
    feast_port = pricing_server.free_port()
    feast = _feast_serve(settings, feast_port, workdir / "feast.log")
    try:
        bento_addr, feast_addr = bento.http.split("://", 1)[1], f"127.0.0.1:{feast_port}"
        tls = bento.tls.ssl_context if bento.tls else lambda: None  # one context a connection: ALPN differs
        http, fs = RawHttp(bento_addr, bento.token, tls()), None
        quote_raw = [http.request("/predict", json.dumps(r).encode()) for r in requests]
        feast_bodies = [json.dumps({"feature_service": "rental_price_v1", "entities": {
            "item_id": [r["item_id"]], "customer_id": [r["customer_id"]], "category": [category[r["item_id"]]]}}).encode()
            for r in requests]  # fmt: skip
        _wait_http(feast_addr, "/get-online-features", feast_bodies[0])
        fs = RawHttp(feast_addr)
        feast_raw = [fs.request("/get-online-features", b) for b in feast_bodies]
        stub = pricing_pb2_grpc.PricingServiceStub(bento.grpc_channel())
        by_stub = partial(stub.Predict, metadata=bento.metadata) if bento.token else stub.Predict
        grpc_msgs = [pricing_pb2.PredictRequest(**r) for r in requests]
        raw_grpc = RawGrpc(bento.grpc_address, bento.token, tls())
        predict = f"/{pricing_pb2.DESCRIPTOR.services_by_name['PricingService'].full_name}/Predict"
        grpc_raw = [raw_grpc.request(predict, m.SerializeToString()) for m in grpc_msgs]
        for i in range(len(requests)):  # warm: every item's category known, connections open
            assert http.send(quote_raw[i]) == 200 and fs.send(feast_raw[i]) == 200
            stubbed, by_raw = by_stub(grpc_msgs[i]), pricing_pb2.Quote.FromString(raw_grpc.send(grpc_raw[i]))
            assert stubbed.price_per_day == by_raw.price_per_day > 0, (stubbed, by_raw)

        stderr.print(
            f"steady {RATE:.0f}/s: HTTP, gRPC (raw and stub) and feast serve in interleaved rounds "
            f"({seconds:.0f} s each)"
        )
        lat = {"http": [], "grpc": [], "grpc_stub": [], "feast": []}
        per_round, offset = int(RATE * 2), 0
        for _ in range(max(1, int(seconds / 2))):
            chunk = range(offset, offset + per_round)
            offset = (offset + per_round) % (len(requests) - per_round)
            lat["http"] += _paced(http.send, [quote_raw[i] for i in chunk], RATE)
            lat["grpc"] += _paced(raw_grpc.send, [grpc_raw[i] for i in chunk], RATE)
            lat["grpc_stub"] += _paced(by_stub, [grpc_msgs[i] for i in chunk], RATE)
            lat["feast"] += _paced(fs.send, [feast_raw[i] for i in chunk], RATE)

        stderr.print(f"throughput: {clients} concurrent HTTP clients, 10 s")
        quotes_per_s = _throughput(lambda: RawHttp(bento_addr, bento.token, tls()), quote_raw, clients, 10.0)

        stderr.print(f"{batches} batches of 100")
        batch_raw = [http.request("/predict_batch", json.dumps({"items": requests[i * 100 % 1900:][:100]}).encode())
                     for i in range(batches)]  # fmt: skip
        batch = _paced(http.send, batch_raw, 20.0)
        result = {
            "http_p50_ms": _pct(lat["http"], 50), "http_p99_ms": _pct(lat["http"], 99),
            "grpc_p50_ms": _pct(lat["grpc"], 50), "grpc_p99_ms": _pct(lat["grpc"], 99),
            "grpc_stub_p50_ms": _pct(lat["grpc_stub"], 50), "grpc_stub_p99_ms": _pct(lat["grpc_stub"], 99),
            "max_quotes_per_s": round(quotes_per_s, 1), "batch100_p99_ms": _pct(batch, 99),
            "rss_mb": _rss_mb(bento.process.pid),
            "feast_serve_p50_ms": _pct(lat["feast"], 50), "feast_serve_p99_ms": _pct(lat["feast"], 99),
            "http_to_feast_p99_ratio": round(_pct(lat["http"], 99) / _pct(lat["feast"], 99), 3),
            "grpc_to_http_p99_ratio": round(_pct(lat["grpc"], 99) / _pct(lat["http"], 99), 3),
            "requests_per_protocol": len(lat["http"]), "rate_per_s": RATE, "clients": clients,
            "workers": int(serving.get("RENTAL_SERVE_WORKERS", settings.serve_workers)), "items": len(items), "cpus": os.cpu_count(),
        }  # fmt: skip
    finally:
        pricing_server.stop(bento)
        os.killpg(feast.pid, 15)
        feast.wait(timeout=30)
    print(json.dumps(result))


if __name__ == "__main__":
    typer.run(main)
