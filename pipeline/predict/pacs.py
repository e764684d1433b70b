"""Films from a PACS, scored and answered there: what `pneumo pacs sync` does, step by step.

Each instance found is keyed by an HMAC of its SOP Instance UID (`instance_key`): that key, never
the UID, is what the inference log, the store and the summary carry. The store records, per
key, first the score (`pacs/scored/`), then that the instance is done (`pacs/done/`: its
results stored, or why it got none). A sync

1. finds the chest radiograph instances of studies dated since its start day (`search_start`);
2. leaves out those already done, and records as done the ones not selected (body part);
3. retrieves and scores the new ones in batches through the same DICOM path as `pneumo
   predict` (rendering, intended-use check in refuse mode, inference and rejected logs), and
   records each score before any result is stored;
4. builds and stores the results of every scored, not yet done instance, and records it done.

So a sync killed between scoring and storing stores the missing results next time from the
recorded scores: nothing is scored twice, and result UIDs derived from the film's make a
repeated store a no-op in the PACS. The watermark moves only when a sync got through all four.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from pipeline.adapters.dicom_results import FilmResult, build_overlay, build_report
from pipeline.adapters.dicomweb import Pacs, PacsInstance
from pipeline.adapters.storage import ObjectStore
from pipeline.data.dicom import film_pixels, instance_key
from pipeline.faults import checkpoint
from pipeline.predict.champion import Champion
from pipeline.predict.inference_log import REJECTED_PREFIX, append_inference_log
from pipeline.predict.scoring import predict_batch
from pipeline.settings import Settings
from pipeline.train.card import INTENDED_USE
from pipeline.train.gradcam import gradcam, overlay_film
from pipeline.train.inputs import input_spec, prepare_image

SCORED_PREFIX = "pacs/scored/"
DONE_PREFIX = "pacs/done/"
WATERMARK_KEY = "pacs/watermark.json"


@dataclass
class SyncSummary:
    """What one sync did; counts only, no identifier."""

    since: str = ""
    found: int = 0
    already_done: int = 0
    scored: int = 0
    reports: int = 0  # SR objects stored
    overlays: int = 0  # Secondary Captures stored
    not_scored: dict[str, int] = field(default_factory=dict)  # reason -> instances
    watermark: str = ""

    def add(self, part: SyncSummary) -> None:
        """Count in what one step of the same sync did."""
        for name in ("found", "already_done", "scored", "reports", "overlays"):
            setattr(self, name, getattr(self, name) + getattr(part, name))
        for reason, count in part.not_scored.items():
            self.not_scored[reason] = self.not_scored.get(reason, 0) + count


@dataclass(frozen=True)
class Pending:
    """The instances a sync has to work on, by what each still needs."""

    to_score: list[PacsInstance]
    to_store: list[PacsInstance]  # scored by an earlier sync that stopped before storing
    keys: dict[str, str]  # SOP Instance UID -> instance key


def search_start(watermark: datetime | None, since: date | None, lookback_days: int,
                 now: datetime) -> date:  # fmt: skip
    """The first study date a sync asks for: `since` if given, else `lookback_days` before the
    last complete sync (before now, on the first sync)."""
    if since is not None:
        return since
    return ((watermark or now) - timedelta(days=lookback_days)).date()


def read_watermark(store: ObjectStore) -> datetime | None:
    if not store.exists(WATERMARK_KEY):
        return None
    return datetime.fromisoformat(json.loads(store.get(WATERMARK_KEY))["complete_sync_at"])


def write_watermark(store: ObjectStore, when: datetime) -> None:
    body = json.dumps({"complete_sync_at": when.isoformat()}).encode()
    store.put(WATERMARK_KEY, body, overwrite=True)


def not_selected_reason(instance: PacsInstance, settings: Settings) -> str | None:
    """Why a found instance is not a film to score (None: it is): its modality, or a body part
    other than the chest where the PACS records one."""
    if instance.modality not in settings.scope.modalities:
        return f"not selected: Modality {instance.modality}"
    if instance.body_part and instance.body_part not in settings.scope.body_parts:
        return f"not selected: BodyPartExamined {instance.body_part}"
    return None


def _record(store: ObjectStore, prefix: str, key: str, record: dict) -> None:
    store.put(f"{prefix}{key}.json", json.dumps(record).encode(), overwrite=True)


def _keys_under(store: ObjectStore, prefix: str) -> set[str]:
    return {k.removeprefix(prefix).removesuffix(".json") for k in store.list(prefix)}


def plan_sync(
    found: list[PacsInstance], store: ObjectStore, settings: Settings, secret: str
) -> tuple[Pending, SyncSummary]:
    """Split `found` by what each instance still needs; records the not selected ones as done."""
    summary = SyncSummary()
    keys = {item.sop_uid: instance_key(item.sop_uid, secret) for item in found}
    done, scored = _keys_under(store, DONE_PREFIX), _keys_under(store, SCORED_PREFIX)
    to_score, to_store = [], []
    not_scored: Counter[str] = Counter()
    for item in found:
        key = keys[item.sop_uid]
        if key in done:
            summary.already_done += 1
        elif key in scored:
            to_store.append(item)
        elif reason := not_selected_reason(item, settings):
            not_scored[reason] += 1
            _record(store, DONE_PREFIX, key, {"outcome": "not scored", "reason": reason})
        else:
            to_score.append(item)
    summary.found = len(found)
    summary.not_scored = dict(not_scored)
    return Pending(to_score, to_store, keys), summary


def score_instances(
    pacs: Pacs, store: ObjectStore, champion: Champion, batch: list[PacsInstance],
    pending: Pending, settings: Settings,
) -> tuple[dict[str, bytes], SyncSummary]:  # fmt: skip
    """Retrieve and score `batch` as `pneumo predict` scores files, log the predictions and
    refusals, and record each score (or refusal, as done) under its instance key; returns the
    retrieved films by key, for `store_results`."""
    keys = [pending.keys[item.sop_uid] for item in batch]
    items = [(key, pacs.retrieve(item)) for key, item in zip(keys, batch, strict=True)]
    # A film outside the intended use gets no result in the PACS: refused, whatever the mode.
    refuse = settings.scope.model_copy(update={"mode": "refuse"})
    predictions, rejected = predict_batch(
        champion, items, settings.ingest.max_pixels, scope_cfg=refuse
    )
    append_inference_log(store, predictions)
    append_inference_log(store, rejected, prefix=REJECTED_PREFIX)
    weights = str(champion.info.get("weights_source", "unknown"))
    for row in predictions.itertuples():
        result = FilmResult(
            float(row.probability), str(row.label), float(row.threshold), champion.name,
            str(champion.version), weights, " ".join(INTENDED_USE),
        )  # fmt: skip
        _record(store, SCORED_PREFIX, str(row.image), dataclasses.asdict(result))
    for row in rejected.itertuples():
        _record(store, DONE_PREFIX, str(row.image), {"outcome": "not scored", "reason": row.issue})
    refusals = Counter(str(issue) for issue in rejected["issue"])
    return dict(items), SyncSummary(scored=len(predictions), not_scored=dict(refusals))


def store_results(
    pacs: Pacs, store: ObjectStore, batch: Iterable[PacsInstance], pending: Pending,
    overlay: Callable[[bytes], bytes] | None, films: Mapping[str, bytes] | None = None,
) -> SyncSummary:  # fmt: skip
    """Store the results of every scored instance of `batch` into its study and record it done;
    `overlay` (film -> Secondary Capture) adds the Grad-CAM capture. `films`: those retrieved
    already, by key (the others, scored by an earlier sync, are retrieved again: a result
    carries the film's patient and study modules, which are never stored here)."""
    summary = SyncSummary()
    for item in batch:
        key = pending.keys[item.sop_uid]
        record = f"{SCORED_PREFIX}{key}.json"
        if not store.exists(record):  # refused while scoring: recorded as done already
            continue
        result = FilmResult(**json.loads(store.get(record)))
        film = films[key] if films and key in films else pacs.retrieve(item)
        parts = [build_report(film, result)]
        if overlay is not None:
            parts.append(overlay(film))
        pacs.store(parts, item.study_uid)
        _record(store, DONE_PREFIX, key, {"outcome": "stored", "objects": len(parts)})
        summary.reports += 1
        summary.overlays += len(parts) - 1
    return summary


def overlay_maker(champion: Champion, max_pixels: int, max_side: int) -> Callable[[bytes], bytes]:
    """film -> the Secondary Capture of its Grad-CAM overlay, on the film as the model read it."""
    spec = input_spec(champion.model)

    def make(film: bytes) -> bytes:
        rendered, _ = film_pixels(film, max_pixels)
        heatmap = gradcam(champion.model, prepare_image(rendered, spec))
        return build_overlay(film, overlay_film(rendered, heatmap, max_side))

    return make


def sync_batch(
    pacs: Pacs, store: ObjectStore, champion: Champion, batch: list[PacsInstance],
    pending: Pending, settings: Settings, overlay: Callable[[bytes], bytes] | None,
) -> SyncSummary:  # fmt: skip
    """Score a batch, then store its results: the fault tests stop a sync between the two."""
    films, summary = score_instances(pacs, store, champion, batch, pending, settings)
    checkpoint("pacs:scored")
    summary.add(store_results(pacs, store, batch, pending, overlay, films))
    return summary
