"""`batch-predict`: score a large archive in shards, in parallel on Dask (wiring only).

The flow plans the job's shards (pipeline.predict.shards), skips those a previous run finished,
and scores the rest as Prefect tasks on a `DaskTaskRunner`: a `LocalCluster` of `workers`
processes by default, or the Dask scheduler at `cluster` (`tcp://scheduler:8786`) in production,
whose workers need this package and the same PNEUMO_*/MLFLOW_* environment.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

from prefect import flow, get_run_logger, task, unmapped
from prefect_dask import DaskTaskRunner

from flows.runtime import flow_settings
from flows.tasks import IO
from pipeline.adapters.backends import open_store
from pipeline.adapters.registry import Registry
from pipeline.adapters.storage import ObjectStore
from pipeline.errors import PneumoError
from pipeline.predict.champion import MONITORED_MODEL, Champion, load_champion
from pipeline.predict.shards import (
    BatchJob,
    Shard,
    Source,
    collect_results,
    list_source,
    pending_shards,
    plan_shards,
    read_plan,
    score_shard,
    store_plan,
    summarise_job,
    write_job_summary,
)
from pipeline.predict.steps import champion_cache
from pipeline.settings import load_settings


class ShardsFailedError(PneumoError, RuntimeError):
    """Some shards failed; the others are kept, and a re-run scores only what is left."""


def dask_runner(workers: int, cluster: str | None) -> DaskTaskRunner:
    """An existing cluster by address, else a LocalCluster of single-threaded worker processes
    that split this machine's cores between their TensorFlow thread pools (each would take every
    core otherwise, and they would fight over them)."""
    if cluster:
        return DaskTaskRunner(address=cluster)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env = {
        "TF_NUM_INTRAOP_THREADS": threads,
        "OMP_NUM_THREADS": threads,
        # Task runs report to this run's server: without it, each worker of an embedded run
        # would start a temporary Prefect server of its own.
        "PREFECT_API_URL": current_api_url(),
    }
    kwargs = {"n_workers": workers, "threads_per_worker": 1, "processes": True, "env": env}
    return DaskTaskRunner(cluster_kwargs=kwargs)


def current_api_url() -> str:
    """The API this flow run talks to (the temporary server's, in the embedded default)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.api_url)


@functools.lru_cache(maxsize=1)
def _champion(version: str, tracking_uri: str, home: str) -> Champion:
    # One load per worker process and version, not per shard: a registered version never
    # changes, so reusing it cannot serve anything stale. The registry and home are part of
    # the cache key only: a worker serving another environment loads again.
    settings = load_settings()
    return load_champion(
        Registry.from_settings(settings), champion_cache(settings), version=version
    )


@task(name="score-shard", **IO)
def score_shard_task(index: int, job: str, source: Source, version: str) -> dict:
    settings = load_settings()
    store = open_store(settings)
    champion = _champion(version, settings.tracking_uri(), str(settings.home))
    shard = read_plan(store, job, index)
    return score_shard(source, shard, champion, store, settings.ingest.max_pixels, settings.scope)


@flow(name="score-shards")
def score_shards(
    source: Source, job: str, indices: list[int], version: str
) -> list[dict | Exception]:
    """Every shard as a task; a shard's failure is returned, not raised, so the others finish
    and are kept."""
    futures = score_shard_task.map(
        indices, job=unmapped(job), source=unmapped(source), version=unmapped(version)
    )
    return [future.result(raise_on_failure=False) for future in futures]


@flow(name="batch-predict", log_prints=True)
def batch_predict(
    source: str,
    shard_size: int = 256,
    workers: int = 1,
    cluster: str | None = None,
    out: str | None = None,
) -> BatchJob:
    """Score every image under a folder, store prefix or manifest CSV with the ResNet champion,
    `shard_size` images per task; re-run with the same arguments to resume."""
    settings = flow_settings()
    store = open_store(settings)
    version = str(Registry.from_settings(settings).require_alias(MONITORED_MODEL).version)
    planned = list_source(source, store)
    shards = plan_shards(planned, shard_size, version)
    store_plan(shards, store)
    todo = pending_shards(shards, store)
    logger = get_run_logger()
    logger.info(
        "job %s: %d images in %d shards, %d already done; model %s v%s",
        shards[0].job, len(planned.names), len(shards), len(shards) - len(todo), MONITORED_MODEL,
        version,
    )  # fmt: skip
    started = time.perf_counter()
    results: list[dict | Exception] = []
    if todo:
        runner = dask_runner(workers, cluster)
        # The stored plan holds the names: the tasks' copy of the source needs none of them.
        light = dataclasses.replace(planned, names=())
        indices = [shard.index for shard in todo]
        results = score_shards.with_options(task_runner=runner)(
            light, shards[0].job, indices, version
        )
    summary = summarise_job(shards, todo, results, version, time.perf_counter() - started)
    return finish_job(store, shards, summary, results, out)


def finish_job(
    store: ObjectStore, shards: list[Shard], summary: BatchJob, results: list, out: str | None
) -> BatchJob:
    """The summary stored beside the shards; all rows to `out` once every shard is done.
    Failed shards fail the run after the rest are kept."""
    summary.summary_uri = store.uri(write_job_summary(store, summary))
    if summary.failed:
        first = next(r for r in results if not isinstance(r, dict))
        raise ShardsFailedError(
            f"{len(summary.failed)} of {len(results)} shards failed (first, shard "
            f"{summary.failed[0]}: {type(first).__name__}: {first}); the others are kept: "
            "re-run to resume"
        )
    if out:
        collect_results(shards, store).to_csv(out, index=False)
        summary.csv = out
    return summary
