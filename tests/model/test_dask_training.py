"""Boosting on a Dask cluster of two worker processes: the same model quality as the local
engine on the same training set, a booster the serving predictor loads as any other, and a
missing cluster that fails fast with what to start."""

from __future__ import annotations

import distributed
import numpy as np
import pandas as pd
import psutil
import pytest
from mlflow import MlflowClient

from tests.worlds.ports import free_port
from training.distributed import DaskClusterError, dask_client
from training.fit import fit
from training.predictor.price_predictor import PricePredictor
from training.train import evaluation, run_training

pytestmark = pytest.mark.integration

# On the shared world (seed 5, 300 items, 12,000 bookings) with every row in every round
# (subsample 1), the two engines' validation MAE measured 5.943 local and 5.955 on Dask (+0.2 %):
# only the merged quantile sketch differs. With the default half of the rows a round each worker
# draws its own sample and the two differ as seeds do (seeds 42, 1, 2: local 6.39, 6.30, 6.52;
# Dask 5.65, 6.25, 6.40), so quality is compared without row sampling.
TOLERANCE = 0.02
ALL_ROWS = {"xgb_subsample": 1.0}


@pytest.fixture(scope="module")
def dask_run(world, tmp_path_factory):
    """``rental train`` with ``RENTAL_TRAIN_FIT_ENGINE=dask`` and no scheduler address: a local
    cluster of two single-threaded worker processes is started for the run and closed after."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow-dask') / 'mlflow.db'}"
    settings = world.model_copy(
        update=ALL_ROWS | {"mlflow_tracking_uri_env": uri, "train_fit_engine": "dask", "dask_scheduler_address": None,
                           "dask_workers": 2, "dask_threads_per_worker": 1}
    )  # fmt: skip
    rounds: list[int] = []
    before = _workers()
    result = run_training(settings, rounds=rounds.append)
    return settings, result, rounds, _workers() - before


def _workers() -> set[int]:
    """This process's children but multiprocessing's resource tracker, which lives as long as it."""
    return {p.pid for p in psutil.Process().children(recursive=True) if "resource_tracker" not in " ".join(p.cmdline())}


def test_dask_model_is_as_good_as_the_local_one_and_beats_the_baselines(dask_run, trained, world):
    _, result, *_ = dask_run
    data, split, *_ = trained
    train, valid = data.frame[split.train], data.frame[split.valid]
    local = evaluation(fit(data, split, world.model_copy(update=ALL_ROWS)), train, valid).metrics
    dask_mae, local_mae = result.metrics["mae"], local["mae"]
    print(
        f"\nvalidation MAE, every row a round: local {local_mae:.4f}, dask {dask_mae:.4f} ({dask_mae / local_mae - 1:+.2%})"
    )
    assert abs(dask_mae - local_mae) <= TOLERANCE * local_mae, (dask_mae, local_mae)
    assert result.metrics["best_baseline_mae"] == pytest.approx(local["best_baseline_mae"])
    assert dask_mae < result.metrics["best_baseline_mae"] and local_mae < local["best_baseline_mae"]
    assert result.decision.promote, result.decision.reasons


def test_the_run_logs_where_it_boosted_and_reports_rounds(dask_run):
    settings, result, rounds, left = dask_run
    params = MlflowClient(settings.mlflow_tracking_uri).get_run(result.run_id).data.params
    assert params["fit.engine"] == "dask" and params["fit.scheduler"] == "local cluster"
    assert params["fit.workers"] == "2" and params["fit.threads"] == "2"
    assert params["xgb.objective"] == "reg:squarederror" and params["target"] == "log"
    # every round's event is sent by rank 0; the last few may land after the run unsubscribes
    assert rounds and rounds == sorted(set(rounds)) and rounds[0] == 1, rounds
    assert result.best_iteration + 1 <= rounds[-1] + settings.xgb_early_stopping_rounds
    assert not left, f"the run's local cluster left processes behind: {left}"


def test_the_dask_booster_serves_through_the_predictor_like_a_local_one(dask_run, trained):
    settings, result, *_ = dask_run
    data, split, local, _ = trained
    predictor = PricePredictor.from_registry(settings)
    assert predictor.version == result.version
    assert predictor.spec == local.spec  # the same inputs, levels and encodings as the local engine's
    valid = data.frame[split.valid]
    prices = predictor.predict(valid)
    mae = float(np.mean(np.abs(prices - valid["price_per_day"].to_numpy())))
    assert mae == pytest.approx(result.metrics["mae"], rel=1e-6)
    row = valid.iloc[3]  # one quote as the service assembles it: Feast's to_dict() plus the request
    online = {name: [None if pd.isna(row[name]) else row[name]] for name in predictor.feature_names}
    quote = online | {"rental_start": [str(row["rental_start"])], "rental_days": [int(row["rental_days"])],
                      "quote_time": [row["quote_time"]]}  # fmt: skip
    assert predictor.predict(quote)[0] == pytest.approx(prices[3], rel=1e-6)


def test_an_existing_cluster_trains_the_same_set_and_stays_up(world, trained):
    data, split, local, _ = trained
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        settings = world.model_copy(
            update={"train_fit_engine": "dask", "dask_scheduler_address": cluster.scheduler_address}
        )
        fitted = fit(data, split, settings)
        with distributed.Client(cluster) as client:  # the run's client left the cluster as it found it
            assert len(client.scheduler_info()["workers"]) == 2
    assert fitted.engine == {"fit.engine": "dask", "fit.scheduler": cluster.scheduler_address, "fit.workers": 2,
                             "fit.threads": 2}  # fmt: skip
    assert fitted.booster.feature_names == local.booster.feature_names
    assert fitted.booster.feature_types == local.booster.feature_types
    ev = evaluation(fitted, data.frame[split.train], data.frame[split.valid])  # default settings: rows sampled
    assert ev.metrics["mae"] < (1 - world.train_gate_margin) * ev.best_baseline[1], ev.metrics


def test_an_unreachable_scheduler_fails_with_what_to_start(world, trained):
    data, split, *_ = trained
    address = f"tcp://127.0.0.1:{free_port()}"
    settings = world.model_copy(
        update={"train_fit_engine": "dask", "dask_scheduler_address": address, "dask_connect_timeout_s": 2.0}
    )
    with pytest.raises(DaskClusterError, match=r"cannot reach the Dask scheduler at .*127\.0\.0\.1.* within 2 s"):
        fit(data, split, settings)


def test_a_scheduler_without_workers_fails_instead_of_waiting(world):
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        settings = world.model_copy(
            update={"dask_scheduler_address": cluster.scheduler_address, "dask_connect_timeout_s": 1.0}
        )
        with pytest.raises(DaskClusterError, match="has no workers after 1 s"), dask_client(settings):
            pass
