"""The boosting step on a Dask cluster, for training sets that outgrow one machine's cores.

XGBoost's own Dask integration does the distributed part: each worker builds the quantile
sketch of its rows, the sketches are merged into one set of bins, and every round's gradient
histograms are summed across workers, so the workers grow one model together. The input is
exactly the local engine's: the same matrix from ``ModelSpec.matrix`` (categorical codes,
target-encoded values, out-of-fold for training rows), the same labels, parameters and
early-stopping weeks (``fit.py``). The answer is an ordinary ``xgboost.Booster``, so
evaluation, the gate, MLflow and serving never know which engine ran.

Not bit for bit the local model: the merged sketch puts some bin edges elsewhere and each
worker draws its own row sample per round, so the two differ as two seeds do
(``tests/model/test_dask_training.py`` measures it).

An existing cluster is named by ``RENTAL_DASK_SCHEDULER_ADDRESS``; its workers need the same
XGBoost. Without one, a ``LocalCluster`` of ``RENTAL_DASK_WORKERS`` processes is started for
the run and closed after it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import xgboost as xgb

from rental.settings import Settings
from training.feature_spec import TrainingDataError

if TYPE_CHECKING:
    import distributed


class DaskClusterError(TrainingDataError):
    """The Dask cluster cannot be reached or has no workers: nothing was trained, and the
    message says what to start (``rental train`` prints it and exits 2, as for missing data)."""


@contextmanager
def dask_client(settings: Settings) -> Iterator[distributed.Client]:
    """A client of the configured scheduler, or of a local cluster that lives as long as it."""
    import distributed

    address, timeout = settings.dask_scheduler_address, settings.dask_connect_timeout_s
    if not address:
        with distributed.LocalCluster(
            n_workers=settings.dask_workers, threads_per_worker=settings.dask_threads_per_worker,
            processes=True, dashboard_address=None,
        ) as cluster, distributed.Client(cluster, timeout=timeout) as client:  # fmt: skip
            yield client
        return
    try:
        client = distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise DaskClusterError(
            f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s ({exc}): start it "
            "(`dask scheduler` and `dask worker <address>`), fix RENTAL_DASK_SCHEDULER_ADDRESS, or leave it "
            "empty for a local cluster"
        ) from None
    with client:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise DaskClusterError(
                f"the Dask scheduler at {address!r} has no workers after {timeout:g} s: start some "
                f"(`dask worker {address}`)"
            ) from None
        yield client


def _partitions(client, x: np.ndarray, y: np.ndarray):
    """``x`` and ``y`` as Dask arrays of one block per worker, the blocks sent straight to their
    worker (never through the scheduler's task graph), each row's label beside its features."""
    import dask.array as da

    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    bounds = np.linspace(0, len(x), len(workers) + 1).astype(int)
    xs, ys = [], []
    for worker, lo, hi in zip(workers, bounds[:-1], bounds[1:], strict=True):
        if hi == lo:
            continue
        fx, fy = client.scatter([x[lo:hi], y[lo:hi]], workers=[worker], hash=False)
        xs.append(da.from_delayed(fx, shape=(hi - lo, x.shape[1]), dtype=x.dtype))
        ys.append(da.from_delayed(fy, shape=(hi - lo,), dtype=y.dtype))
    return da.concatenate(xs), da.concatenate(ys)


def _round_reporter(topic: str):
    """A callback that tells the client each finished round. Defined here, not at module level,
    so cloudpickle ships it by value: the workers need XGBoost, not this project."""
    import distributed
    from xgboost import collective

    class Rounds(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log) -> bool:
            if collective.get_rank() == 0:  # every worker sees the same allreduced round
                distributed.get_worker().log_event(topic, epoch + 1)
            return False

    return Rounds()


def train_on_dask(
    params: dict,
    train: tuple[np.ndarray, np.ndarray],
    stop: tuple[np.ndarray, np.ndarray],
    names: list[str],
    types: list[str],
    settings: Settings,
    progress: Callable[[int], None] | None = None,
) -> tuple[xgb.Booster, dict[str, str | int]]:
    """``xgb.train``'s rounds on the cluster: the booster (not yet cut to its best round) and
    what ran it, for the run's parameters."""
    from xgboost import dask as dxgb

    params = {k: v for k, v in params.items() if k != "nthread"}  # each worker uses its own threads
    with dask_client(settings) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        matrix = {"feature_names": names, "feature_types": types, "enable_categorical": True,
                  "max_bin": params["max_bin"]}  # fmt: skip
        dtrain = dxgb.DaskQuantileDMatrix(client, *_partitions(client, *train), **matrix)
        dstop = dxgb.DaskQuantileDMatrix(client, *_partitions(client, *stop), ref=dtrain, **matrix)
        topic = f"rental-boosting-{uuid.uuid4().hex}"
        if progress:
            client.subscribe_topic(topic, lambda event: progress(int(event[1])))
        try:
            output = dxgb.train(
                client, params, dtrain, num_boost_round=settings.xgb_num_boost_round, evals=[(dstop, "stop")],
                early_stopping_rounds=settings.xgb_early_stopping_rounds, verbose_eval=False,
                callbacks=[_round_reporter(topic)] if progress else None,
            )  # fmt: skip
        finally:
            if progress:
                client.unsubscribe_topic(topic)
        engine = {
            "fit.engine": "dask",
            "fit.scheduler": settings.dask_scheduler_address or "local cluster",
            "fit.workers": len(workers),
            "fit.threads": sum(w["nthreads"] for w in workers.values()),
        }
    return output["booster"], engine
