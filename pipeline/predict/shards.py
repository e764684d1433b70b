"""Sharded batch inference: a large archive cut into shards that are scored independently.

A job is fixed by its source, the names under it, the shard size and the model version: the same
four give the same job id and the same shards, so a re-run resumes it. Each shard writes its
inference-log object (named after the job and shard, so a retry overwrites rather than adds
rows), its rejected-log object, then its result: the result, written last, is the mark that the
shard is done, and a re-run skips every shard that has one.

A source is a local folder (every worker must see it: a `LocalCluster`, or a shared mount), a
prefix of the object store, or a CSV in the store or on disk with a `key` column of store keys
(the ingest manifest is one).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from pipeline.adapters.storage import ObjectNotFoundError, ObjectStore
from pipeline.files import listed_entries, read_listed
from pipeline.predict.champion import Champion
from pipeline.predict.inference_log import (
    LOG_PREFIX,
    REJECTED_PREFIX,
    append_inference_log,
    parquet_bytes,
)
from pipeline.predict.scoring import Items, Unread, predict_batch
from pipeline.settings import ScopeConfig

JOBS_PREFIX = "batch-jobs"
RESULT_COLUMNS = [
    "image", "sha256", "probability", "label", "threshold", "model_version", "in_scope",
    "scope_reasons",
]  # fmt: skip


@dataclass(frozen=True)
class Source:
    """What to score: `kind` is folder, prefix or manifest; `names` are paths under the folder,
    or store keys."""

    location: str
    kind: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Shard:
    job: str
    index: int
    names: tuple[str, ...]

    @property
    def result_key(self) -> str:
        return f"{JOBS_PREFIX}/{self.job}/shards/{self.index:06d}.parquet"

    @property
    def plan_key(self) -> str:
        return plan_key(self.job, self.index)


def plan_key(job: str, index: int) -> str:
    return f"{JOBS_PREFIX}/{job}/plan/{index:06d}.json"


def list_source(location: str, store: ObjectStore) -> Source:
    """The names to score under a folder, a store prefix, or in a manifest CSV (`key` column)."""
    folder = Path(location)
    if folder.is_dir():
        names = tuple(p.relative_to(folder).as_posix() for p in listed_entries(folder))
        source = Source(str(folder.resolve()), "folder", names)
    elif location.endswith(".csv"):
        source = Source(location, "manifest", manifest_keys(location, store))
    else:
        source = Source(location, "prefix", tuple(store.list(location)))
    if not source.names:
        raise FileNotFoundError(
            f"{location!r}: nothing to score (an empty folder or manifest, or a store prefix "
            "with no objects)"
        )
    return source


def manifest_keys(location: str, store: ObjectStore) -> tuple[str, ...]:
    """The `key` column of a manifest CSV on disk, else in the store."""
    path = Path(location)
    try:
        data = path.read_bytes() if path.is_file() else store.get(location)
    except ObjectNotFoundError:
        raise FileNotFoundError(f"manifest {location!r}: no such file or store object") from None
    table = pd.read_csv(io.BytesIO(data))
    if "key" not in table.columns:
        raise ValueError(f"manifest {location!r} has no 'key' column (columns: {list(table)})")
    return tuple(dict.fromkeys(table["key"].astype(str)))  # in order, each once


def plan_shards(source: Source, shard_size: int, model_version: str) -> list[Shard]:
    """The job's shards, in order. The job id hashes everything that decides the results."""
    if shard_size < 1:
        raise ValueError(f"shard size must be at least 1, not {shard_size}")
    identity = "\n".join([source.location, str(shard_size), model_version, *source.names])
    job = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return [
        Shard(job, index, source.names[start : start + shard_size])
        for index, start in enumerate(range(0, len(source.names), shard_size))
    ]


def store_plan(shards: list[Shard], store: ObjectStore) -> None:
    """Each shard's names as an object of its own, so a task is given a shard's index, not its
    names (a million names would otherwise travel as flow-run parameters)."""
    for shard in shards:
        if not store.exists(shard.plan_key):
            store.put(shard.plan_key, json.dumps(list(shard.names)).encode())


def read_plan(store: ObjectStore, job: str, index: int) -> Shard:
    names = json.loads(store.get(plan_key(job, index)))
    return Shard(job, index, tuple(names))


def pending_shards(shards: list[Shard], store: ObjectStore) -> list[Shard]:
    """The shards without a result yet: what a re-run still has to score."""
    return [shard for shard in shards if not store.exists(shard.result_key)]


def read_shard(source: Source, shard: Shard, store: ObjectStore) -> tuple[Items, Unread]:
    """(name, bytes) of the shard's images, and (name, reason) for those that cannot be read."""
    items: Items = []
    unread: Unread = []
    for name in shard.names:
        if source.kind == "folder":
            data, reason = read_listed(Path(source.location) / name)
        else:
            try:
                data, reason = store.get(name), None
            except ObjectNotFoundError:
                data, reason = None, "gone from the store since the job was planned"
        if data is None:
            unread.append((name, reason or "not read"))
        else:
            items.append((name, data))
    return items, unread


def score_shard(
    source: Source,
    shard: Shard,
    champion: Champion,
    store: ObjectStore,
    max_pixels: int,
    scope_cfg: ScopeConfig,
) -> dict:
    """Score one shard, log it, and mark it done; its counts and time."""
    started = time.perf_counter()
    items, unread = read_shard(source, shard, store)
    now = datetime.now(UTC)
    predictions, rejected = predict_batch(
        champion, items, max_pixels, now=now, unread=unread, scope_cfg=scope_cfg
    )
    name = f"batch-{shard.job}-{shard.index:06d}"
    for prefix, table in ((LOG_PREFIX, predictions), (REJECTED_PREFIX, rejected)):
        append_inference_log(store, table, now, prefix, name)
    result = predictions.reindex(columns=RESULT_COLUMNS)
    store.put(shard.result_key, parquet_bytes(result), overwrite=True)  # last: the done mark
    return {
        "shard": shard.index,
        "scored": len(predictions),
        "out_of_scope": int((~predictions["in_scope"]).sum()) if len(predictions) else 0,
        "rejected": len(rejected),
        "seconds": round(time.perf_counter() - started, 2),
    }


def collect_results(shards: list[Shard], store: ObjectStore) -> pd.DataFrame:
    """Every shard's scored rows, in shard order."""
    tables = [pd.read_parquet(io.BytesIO(store.get(shard.result_key))) for shard in shards]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=RESULT_COLUMNS)


@dataclass
class BatchJob:
    """What a run of a batch job did: shards skipped, scored and failed (by index), images
    scored and refused, and the rate; stored as JSON beside the shards."""

    job: str
    model_version: str
    shards: int
    skipped_done: int
    scored_now: int
    failed: list[int]
    images_scored: int
    images_rejected: int
    images_out_of_scope: int
    seconds: float
    images_per_second: float
    summary_uri: str = ""  # where the stored summary is (set once stored)
    csv: str | None = None  # every scored row, once all shards are done and one was asked for


def summarise_job(
    shards: list[Shard],
    todo: list[Shard],
    results: list[dict | Exception],
    version: str,
    seconds: float,
) -> BatchJob:
    """What this run of the job did. `results`: one per shard of `todo`, a count or the
    failure."""
    done = [r for r in results if isinstance(r, dict)]
    scored = sum(r["scored"] for r in done)
    return BatchJob(
        job=shards[0].job,
        model_version=version,
        shards=len(shards),
        skipped_done=len(shards) - len(todo),
        scored_now=len(done),
        failed=[s.index for s, r in zip(todo, results, strict=True) if not isinstance(r, dict)],
        images_scored=scored,
        images_rejected=sum(r["rejected"] for r in done),
        images_out_of_scope=sum(r.get("out_of_scope", 0) for r in done),
        seconds=round(seconds, 1),
        images_per_second=round(scored / seconds, 2) if seconds and scored else 0.0,
    )


def write_job_summary(store: ObjectStore, summary: BatchJob) -> str:
    """The job's summary beside its shards (without where it is and the CSV); its key."""
    key = f"{JOBS_PREFIX}/{summary.job}/summary.json"
    record = {k: v for k, v in asdict(summary).items() if k not in ("summary_uri", "csv")}
    store.put(key, json.dumps(record, indent=2).encode(), overwrite=True)
    return key
