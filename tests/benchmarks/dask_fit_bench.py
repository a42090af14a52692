"""The boosting step alone, local against Dask: ``python -m tests.benchmarks.dask_fit_bench``.

One simulated history (cached under the temp dir, as ``train_bench`` builds it), one training
set, then the same fit three ways: in this process, on a Dask ``LocalCluster`` already running
(``--workers`` processes of one thread), and the cluster's own start and close, which a run
without ``RENTAL_DASK_SCHEDULER_ADDRESS`` pays too. Prints ONE JSON line on stdout.
"""

from __future__ import annotations

import json
import time

import numpy as np
import typer

app = typer.Typer(add_completion=False)


@app.command()
def main(items: int = 2_000, bookings: int = 100_000, seed: int = 0, workers: int = 2) -> None:
    import distributed

    from tests.benchmarks.train_bench import _settings, prepare
    from training.dataset import build_training_set
    from training.fit import fit, predict_price, time_split

    settings = _settings(prepare(items, bookings, seed))
    data = build_training_set(settings)
    split = time_split(data.frame, settings)
    valid = data.frame[split.valid]

    def timed(s):
        started = time.perf_counter()
        fitted = fit(data, split, s)
        mae = float(np.mean(np.abs(predict_price(fitted.booster, fitted.spec, valid) - valid["price_per_day"])))
        return time.perf_counter() - started, mae, fitted.best_iteration

    local_s, local_mae, local_best = timed(settings)
    started = time.perf_counter()
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    start_s = time.perf_counter() - started
    dask = settings.model_copy(update={"train_fit_engine": "dask", "dask_scheduler_address": cluster.scheduler_address})
    dask_s, dask_mae, dask_best = timed(dask)
    started = time.perf_counter()
    cluster.close()
    close_s = time.perf_counter() - started
    print(json.dumps({
        "bookings": len(data.frame), "train_rows": int(split.train.sum()), "workers": workers,
        "local_fit_s": round(local_s, 2), "dask_fit_s": round(dask_s, 2),
        "cluster_start_s": round(start_s, 2), "cluster_close_s": round(close_s, 2),
        "local_mae": round(local_mae, 4), "dask_mae": round(dask_mae, 4),
        "local_best_iteration": local_best, "dask_best_iteration": dask_best,
    }))  # fmt: skip


if __name__ == "__main__":
    app()
