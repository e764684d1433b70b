"""`pacs-sync`: new chest films from the PACS scored by the champion, results stored back into
their studies (wiring only; the steps are `pipeline.predict.pacs`)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from prefect import flow, get_run_logger

from flows.runtime import flow_settings
from flows.tasks import COMPUTE, IO, step
from pipeline.adapters.backends import open_store
from pipeline.adapters.dicomweb import Pacs, PacsInstance
from pipeline.adapters.registry import Registry
from pipeline.adapters.storage import ObjectStore
from pipeline.data.steps import patient_secret
from pipeline.predict.champion import Champion, load_champion
from pipeline.predict.pacs import (
    Pending,
    SyncSummary,
    overlay_maker,
    plan_sync,
    read_watermark,
    search_start,
    store_results,
    sync_batch,
    write_watermark,
)
from pipeline.predict.steps import champion_cache
from pipeline.progress import chunked
from pipeline.settings import Settings

PACS_SYNC = "pacs-sync"


@step("pacs-find", IO)
def find_task(
    pacs: Pacs, store: ObjectStore, settings: Settings, start: date
) -> tuple[Pending, SyncSummary]:
    found = pacs.find(settings.scope.modalities, start)
    return plan_sync(found, store, settings, patient_secret(settings))


@step("pacs-store-scored", IO)
def store_scored_task(
    pacs: Pacs, store: ObjectStore, pending: Pending, champion: Champion, settings: Settings,
    overlay: bool,
) -> SyncSummary:  # fmt: skip
    maker = _overlay(champion, settings, overlay)
    return store_results(pacs, store, pending.to_store, pending, maker)


@step("pacs-batch", COMPUTE)
def batch_task(
    pacs: Pacs, store: ObjectStore, champion: Champion, batch: list[PacsInstance],
    pending: Pending, settings: Settings, overlay: bool,
) -> SyncSummary:  # fmt: skip
    maker = _overlay(champion, settings, overlay)
    return sync_batch(pacs, store, champion, batch, pending, settings, maker)


def _overlay(champion: Champion, settings: Settings, overlay: bool):
    if not overlay:
        return None
    return overlay_maker(champion, settings.ingest.max_pixels, settings.serve_explain_max_side)


@flow(name=PACS_SYNC, log_prints=True)
def pacs_sync(since: str | None = None, overlay: bool = False) -> SyncSummary:
    """Score the chest films the PACS received since the last complete sync (`since`: from this
    study date, YYYY-MM-DD) and store an SR per film (and with `overlay` a Grad-CAM Secondary
    Capture) into its study."""
    settings = flow_settings()
    store = open_store(settings)
    pacs = Pacs(settings.pacs)
    started = datetime.now(UTC)
    first_day = date.fromisoformat(since) if since else None
    start = search_start(read_watermark(store), first_day, settings.pacs.lookback_days, started)
    pending, summary = find_task(pacs, store, settings, start)
    summary.since = start.isoformat()
    if pending.to_score or pending.to_store:
        champion = load_champion(Registry.from_settings(settings), champion_cache(settings))
        if pending.to_store:  # scored by a sync that stopped before storing
            summary.add(store_scored_task(pacs, store, pending, champion, settings, overlay))
        for batch in chunked(pending.to_score, settings.pacs.batch_size):
            summary.add(batch_task(pacs, store, champion, batch, pending, settings, overlay))
    write_watermark(store, started)
    summary.watermark = started.isoformat()
    get_run_logger().info(
        "pacs sync: %d found, %d done before, %d scored, %d reports stored, %d not scored",
        summary.found, summary.already_done, summary.scored, summary.reports,
        sum(summary.not_scored.values()),
    )  # fmt: skip
    return summary
