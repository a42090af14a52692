"""A real-like catalogue (item_id, brand, category; free words; thousands of brands) goes through
`rental history load`, the backfill, `rental train`, the Pricer and `bentoml serve` (HTTP and gRPC);
its text never breaks a metric name; and quoting an item from its attributes alone beats its
brand's median on held-out items."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import mlflow
import numpy as np
import pandas as pd
import pytest
import redis as redis_py
from typer.testing import CliRunner

from rental.cli import app
from rental.settings import Settings
from tests.model.conftest import FAST, REDIS_DB
from tests.worlds.real_catalogue import NASTY, bookings, catalogue
from training.attributes import evaluate_attributes, holdout


def test_attributes_alone_beat_the_brand_median_on_held_out_items():
    """Tens of thousands of items, thousands of brands with a long tail, prices that depend on
    brand, category and colour: the issue's check, at the size of a public catalogue."""
    items = catalogue(30_000, 3_000, seed=3)
    assert items["brand"].nunique() > 2_000 and (items["brand"].value_counts() == 1).sum() > 500  # a long tail
    rows = items.loc[items.index.repeat(2)].rename(
        columns={"category": "item_category", "listed_price": "price_per_day"}
    )
    rows["price_per_day"] *= np.random.default_rng(1).lognormal(0, 0.05, size=len(rows))
    got = evaluate_attributes(rows, max_levels=64)
    assert got["attributes_only_items_held_out"] > 5_000
    print(got)
    assert got["attributes_only_mae"] < 0.9 * got["attributes_only_brand_median_mae"]


def test_items_are_held_out_whole_and_the_same_on_every_run():
    ids = pd.Series([f"i{k}" for k in range(10_000)])
    held = holdout(ids)
    assert 0.17 < held.mean() < 0.23 and np.array_equal(held, holdout(ids.sample(frac=1).sort_index()))


def test_too_few_items_say_so_instead_of_failing():
    rows = pd.DataFrame({"item_id": ["a", "b"], "brand": ["x", "y"], "price_per_day": [10.0, 20.0]})
    assert evaluate_attributes(rows) == {}
    assert evaluate_attributes(rows.iloc[:0]) == {}


@pytest.fixture(scope="module")
def real_world(tmp_path_factory, settings):
    """The minimum catalogue with nasty names, loaded through `rental history load`, backfilled,
    applied and materialised into Redis (the model tests' db)."""
    from streaming.backfill import run_backfill
    from streaming.events import EPOCH
    from streaming.feature_store.store import apply, feature_store
    from streaming.history.tables import history_paths, load_history

    root = tmp_path_factory.mktemp("real-catalogue")
    redis_url = settings.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    local = Settings(
        data_dir=root / "data",
        REDIS_URL=redis_url,
        MLFLOW_TRACKING_URI=None,
        topic_predictions=f"t19-real-predictions-{os.getpid()}",
        train_max_category_levels=16,
        **FAST,
    )  # fmt: skip  (60 brands: target-encoded, served from the model's spec)
    now = datetime.now(UTC)
    items = catalogue(400, 60, seed=8, categories=8)
    booked = bookings(items, customers=300, n=9_000, end=now.date(), days=150, seed=8)
    files = {"items": root / "items.csv", "customers": root / "customers.csv", "bookings": root / "bookings.csv"}
    items[["item_id", "name", "brand", "category"]].to_csv(files["items"], index=False)  # the minimum (and a name)
    pd.DataFrame({"customer_id": sorted(set(booked["customer_id"]))}).to_csv(files["customers"], index=False)
    booked.to_csv(files["bookings"], index=False)
    result = CliRunner().invoke(app, ["history", "load", *[f"--{k}={v}" for k, v in files.items()],
                                      f"--out={local.history_dir}"])  # fmt: skip
    assert result.exit_code == 0, result.output
    history = load_history(*history_paths(local.history_dir))
    assert set(NASTY[:2]) <= set(history.items["category"])
    run_backfill(history, local, as_of=pd.Timestamp(now))
    apply(local)
    feature_store(local).materialize(start_date=EPOCH, end_date=now)
    yield local, items
    redis_py.Redis.from_url(redis_url).close()


def test_the_minimum_catalogue_trains_registers_and_is_quoted(real_world, tmp_path):
    from bento_service.pricing import Pricer, QuoteInput
    from training.train import run_training

    local, items = real_world
    exported = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        result = run_training(local)
        run = mlflow.get_run(result.run_id)
    finally:
        if exported is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = exported
    assert result.version and result.metrics["mae"] < result.metrics["global_median_mae"]
    assert result.metrics["attributes_only_mae"] > 0 and result.metrics["attributes_only_brand_median_mae"] > 0
    # Every per-category metric name is safe text: no commas, slashes beyond MLflow's, no 500 characters.
    per_category = [name for name in run.data.metrics if name.startswith("mae_") and name != "mae"]
    assert per_category and all(len(name) < 120 and "," not in name for name in per_category)

    pricer = Pricer(local)
    pricer.start()
    try:
        served = pricer.model.current
        assert served.version == result.version and "brand" in served.spec.encodings  # brand, target-encoded
        start = datetime.now(UTC).date() + timedelta(days=10)
        wanted = [*items["item_id"].head(5).tolist(), "real-no-such-item"]
        priced = pricer.quote([QuoteInput(i, "rc-00001", start, 3) for i in wanted], "http")
        assert priced.not_found == ["real-no-such-item"]
        assert len(priced.quotes) == 5 and all(q["price_per_day"] > 0 for q in priced.quotes)
        assert pricer.quote([], "http").quotes == []  # zero rows: an empty answer
    finally:
        pricer.close()
    _served_over_http_and_grpc(local, items, result.version, tmp_path)


def _served_over_http_and_grpc(local: Settings, items: pd.DataFrame, version: str, tmp_path) -> None:
    """`bentoml serve` (as `rental serve` runs it) on the minimum catalogue's model: a quote over
    HTTP and the same over gRPC, for an item whose category is one of the nasty names."""
    from bento_service.protos import pricing_pb2, pricing_pb2_grpc
    from rental.servers.pricing import start, stop
    from tests.worlds.serving_world import world_env

    env = world_env(local.data_dir, local.redis_url, RENTAL_TOPIC_PREDICTIONS=local.topic_predictions,
                    RENTAL_SERVE_WORKERS="1")  # fmt: skip
    nasty = items[items["category"].isin(NASTY)]["item_id"].iloc[0]
    start_date = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()
    served = start(env, tmp_path / "serve.log")
    try:
        with served.http_client(timeout=10) as http:
            answer = http.post("/predict", json={"item_id": nasty, "rental_start": start_date, "rental_days": 3})
            assert answer.status_code == 200, answer.text
            quote = answer.json()
            assert quote["model_version"] == version and quote["price_per_day"] > 0
            assert http.post("/predict_batch", json={"items": []}).status_code == 400  # minItems: 1, stated
        with served.grpc_channel() as channel:
            stub = pricing_pb2_grpc.PricingServiceStub(channel)
            by_grpc = stub.Predict(pricing_pb2.PredictRequest(item_id=nasty, rental_start=start_date, rental_days=3),
                                   timeout=10)  # fmt: skip
        assert by_grpc.price_per_day == pytest.approx(quote["price_per_day"], abs=0.01)
    finally:
        stop(served)


def test_a_history_too_short_for_the_time_split_still_reports_attributes_against_brand_median(real_world):
    from training.feature_spec import TrainingDataError
    from training.train import run_training

    local, _ = real_world
    with pytest.raises(TrainingDataError, match=r"(?s)use a longer history.*attributes only vs brand median on"):
        run_training(local.model_copy(update={"train_validation_weeks": 52}))
