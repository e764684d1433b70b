"""Champion against challenger on the traffic the service really gets (`pneumo compare`).

The shadow (`pneumo serve --shadow`) logs each accepted film twice: alias `champion` with the
served score and alias `challenger` with the challenger's. Paired by content, the two say how
often the challenger would have answered differently; once radiologists' reads arrive
(`pneumo labels add`) they give a paired AUC difference with its patient-bootstrap interval and
each model's sensitivity and specificity at its own threshold. The recommendation is the
registration gate's rule applied to live films: promote when the challenger's AUC is
non-inferior (the whole interval above -max_auc_drop) and its sensitivity is not more than the
tolerance below the champion's; keep when it is not; not enough evidence below `min_per_class`
labelled films of either class, since the interval would then mean little.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.adapters.registry import CHALLENGER, CHAMPION, Registry
from pipeline.adapters.storage import ObjectNotFoundError, ObjectStore, sha256_hex
from pipeline.data.dicom import DicomError, image_pixels
from pipeline.errors import PneumoError
from pipeline.files import listed_entries, read_listed
from pipeline.monitor.labels import join_labels, read_labels
from pipeline.predict.champion import MONITORED_MODEL
from pipeline.predict.inference_log import read_inference_log
from pipeline.settings import PerformanceConfig
from pipeline.train.uncertainty import compare_auc, rate_metrics

LAST_COMPARE_KEY = "reports/shadow/last-compare.json"
PROMOTE, KEEP, NOT_ENOUGH = "promote", "keep", "not enough evidence"
MAX_LISTED = 50  # disagreements listed in the summary (all are counted)
GRADCAM_PREFIX = "reports/shadow/gradcam"


@dataclass(frozen=True)
class ShadowComparison:
    champion: str | None
    challenger: str | None
    pairs: int  # films scored by both
    agreement: float  # share of pairs with the same label
    correlation: float  # Pearson, of the two probabilities
    mean_abs_difference: float
    disagreements: int
    listed: list[dict[str, Any]]  # the newest disagreements, up to MAX_LISTED
    labelled: dict[str, int]  # labelled pairs by class
    auc: dict[str, float] | None  # challenger - champion, with interval and margin
    rates: dict[str, dict[str, float]]  # alias -> sensitivity, specificity at its threshold
    recommendation: str
    reasons: list[str]
    checked_at: str
    days: int | None = None

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def shadow_pairs(log: pd.DataFrame, champion: str, challenger: str) -> pd.DataFrame:
    """One row per film scored by both versions (its latest score from each): image, sha256,
    timestamp, and per alias probability, label and threshold."""
    if log.empty or "alias" not in log.columns:
        return pd.DataFrame()
    log = log.sort_values("timestamp", kind="stable")
    sides = []
    for alias, version in ((CHAMPION, champion), (CHALLENGER, challenger)):
        rows = log[(log["alias"] == alias) & (log["model_version"].astype(str) == version)]
        rows = rows.drop_duplicates("sha256", keep="last")
        sides.append(
            rows[["sha256", "image", "timestamp", "probability", "label", "threshold"]]
            .set_index("sha256")
            .add_suffix(f"_{alias}")
        )
    pairs = sides[0].join(sides[1], how="inner")
    return pairs.reset_index().sort_values(f"timestamp_{CHAMPION}", kind="stable")


def agreement_figures(pairs: pd.DataFrame) -> dict[str, Any]:
    """How alike the two answered: label agreement, score correlation and distance, and the
    films where the labels differ (newest first)."""
    first, second = pairs[f"probability_{CHAMPION}"], pairs[f"probability_{CHALLENGER}"]
    differ = pairs[pairs[f"label_{CHAMPION}"] != pairs[f"label_{CHALLENGER}"]]
    constant = first.nunique() < 2 or second.nunique() < 2
    listed = [
        {
            "image": row[f"image_{CHAMPION}"],
            "sha256": row["sha256"],
            **{
                alias: {
                    "probability": row[f"probability_{alias}"],
                    "label": row[f"label_{alias}"],
                }
                for alias in (CHAMPION, CHALLENGER)
            },
        }
        for _, row in differ.iloc[::-1].head(MAX_LISTED).iterrows()
    ]
    return {
        "agreement": float(1 - len(differ) / len(pairs)),
        "correlation": float("nan") if constant else float(np.corrcoef(first, second)[0, 1]),
        "mean_abs_difference": float((first - second).abs().mean()),
        "disagreements": len(differ),
        "listed": listed,
    }


def labelled_comparison(
    labelled: pd.DataFrame, margin: float, cfg: PerformanceConfig
) -> tuple[dict[str, float] | None, dict[str, dict[str, float]]]:
    """On labelled pairs: the paired AUC difference (challenger - champion) with its interval,
    and each model's rates at its own logged threshold."""
    truth = labelled["truth"].to_numpy(dtype=int)
    scores = {a: labelled[f"probability_{a}"].to_numpy(float) for a in (CHAMPION, CHALLENGER)}
    rates = {
        alias: {
            k: v
            for k, v in rate_metrics(
                truth, scores[alias] - labelled[f"threshold_{alias}"].to_numpy(float), 0.0
            ).items()
            if k in ("sensitivity", "specificity")
        }
        for alias in (CHAMPION, CHALLENGER)
    }
    if truth.min() == truth.max():
        return None, rates
    auc = compare_auc(
        truth,
        scores[CHALLENGER],
        scores[CHAMPION],
        labelled["patient_id"].astype(str).tolist(),
        margin,
        resamples=cfg.resamples,
    )
    figures = {"difference": auc.difference, "ci_low": auc.low, "ci_high": auc.high}
    return figures | {"margin": margin, "p_value": auc.p_value}, rates


def recommend(
    counts: dict[str, int],
    auc: dict[str, float] | None,
    rates: dict[str, dict[str, float]],
    cfg: PerformanceConfig,
) -> tuple[str, list[str]]:
    """promote / keep / not enough evidence, with the reasons a reviewer reads."""
    short = [f"{n} labelled {c} films" for c, n in counts.items() if n < cfg.min_per_class]
    if short or auc is None or np.isnan(auc["ci_low"]):
        need = f"need >= {cfg.min_per_class} of each class for an interval that means much"
        return NOT_ENOUGH, [", ".join(short) or "no usable interval", need]
    reasons = [
        f"AUC difference {auc['difference']:+.3f} [95 % CI {auc['ci_low']:+.3f}, "
        f"{auc['ci_high']:+.3f}] against margin -{auc['margin']:.3f}"
    ]
    non_inferior = auc["ci_low"] > -auc["margin"]
    reasons.append("non-inferior on AUC" if non_inferior else "not shown non-inferior on AUC")
    lost = rates[CHAMPION]["sensitivity"] - rates[CHALLENGER]["sensitivity"]
    sensitive = lost <= cfg.tolerance
    reasons.append(
        f"sensitivity {rates[CHALLENGER]['sensitivity']:.3f} against the champion's "
        f"{rates[CHAMPION]['sensitivity']:.3f} (tolerance {cfg.tolerance:.2f})"
    )
    return (PROMOTE if non_inferior and sensitive else KEEP), reasons


def compare_shadow(
    store: ObjectStore,
    registry: Registry,
    cfg: PerformanceConfig,
    margin: float,
    now: datetime | None = None,
) -> ShadowComparison:
    """The current champion and challenger on the shadow traffic of the window (`cfg.days`)."""
    now = now or datetime.now(UTC)
    found = {a: registry.alias_version(MONITORED_MODEL, a) for a in (CHAMPION, CHALLENGER)}
    champion, challenger = (str(v.version) if v else None for v in found.values())
    log = read_inference_log(store, days=cfg.days, now=now)
    pairs = (
        shadow_pairs(log, champion, challenger)
        if champion and challenger and champion != challenger
        else pd.DataFrame()
    )
    stamp = now.isoformat(timespec="seconds")
    if pairs.empty:
        why = (
            "the challenger is the champion: nothing to compare"
            if champion == challenger
            else "no film scored by both: run the service with --shadow"
        )
        return ShadowComparison(
            champion, challenger, 0, float("nan"), float("nan"), float("nan"), 0, [],
            {"NORMAL": 0, "PNEUMONIA": 0}, None, {}, NOT_ENOUGH, [why], stamp, cfg.days,
        )  # fmt: skip
    labelled = labelled_pairs(pairs, store)
    counts = {
        "NORMAL": int((labelled["truth"] == 0).sum()) if not labelled.empty else 0,
        "PNEUMONIA": int(labelled["truth"].sum()) if not labelled.empty else 0,
    }
    auc, rates = labelled_comparison(labelled, margin, cfg) if len(labelled) else (None, {})
    recommendation, reasons = recommend(counts, auc, rates, cfg)
    return ShadowComparison(
        champion, challenger, len(pairs), **agreement_figures(pairs), labelled=counts, auc=auc,
        rates=rates, recommendation=recommendation, reasons=reasons, checked_at=stamp,
        days=cfg.days,
    )  # fmt: skip


def find_films(folder: Path, digests: set[str], max_pixels: int) -> dict[str, bytes]:
    """The films under `folder` whose content digest (as the inference log records it: a
    DICOM film's rendered pixels, anything else its bytes) is in `digests`, as the model reads
    them. Entries that cannot be read or rendered are passed over: they only go unshown."""
    if not folder.is_dir():
        raise FileNotFoundError(f"films {folder}: no such folder")
    found: dict[str, bytes] = {}
    for path in listed_entries(folder):
        if len(found) == len(digests):  # every film wanted is found: the rest is not read
            break
        data, _ = read_listed(path)
        try:
            pixels = image_pixels(data, max_pixels) if data else None
        except DicomError:
            continue
        digest = sha256_hex(pixels) if pixels else None
        if digest in digests:
            found[digest] = pixels
    return found


def explain_disagreements(
    comparison: ShadowComparison,
    films: dict[str, bytes],
    models: dict[str, Any],
    store: ObjectStore,
    max_side: int = 512,
) -> ShadowComparison:
    """The comparison with a Grad-CAM for each listed disagreement whose film is in `films`:
    the champion's overlay beside the challenger's, one PNG in the store, its URI under the
    film's `gradcam`. Where two models label a film differently, a reviewer wants to see what
    each one looked at."""
    from PIL import Image

    from pipeline.train.gradcam import gradcam, overlay_film
    from pipeline.train.inputs import input_spec, prepare_image

    listed = []
    for item in comparison.listed:
        data = films.get(item["sha256"])
        if data is not None:
            panels = [
                overlay_film(data, gradcam(model, prepare_image(data, input_spec(model))), max_side)
                for model in (models[CHAMPION], models[CHALLENGER])
            ]
            buffer = io.BytesIO()
            Image.fromarray(np.concatenate(panels, axis=1)).save(buffer, "PNG")
            key = (
                f"{GRADCAM_PREFIX}/{item['sha256'][:16]}-v{comparison.champion}"
                f"-v{comparison.challenger}.png"
            )
            store.put(key, buffer.getvalue(), overwrite=True)
            item = {**item, "gradcam": store.uri(key)}
        listed.append(item)
    return replace(comparison, listed=listed)


def labelled_pairs(pairs: pd.DataFrame, store: ObjectStore) -> pd.DataFrame:
    """The pairs whose film has a read in force, with `truth` and `patient_id`."""
    as_log = pairs.rename(
        columns={f"image_{CHAMPION}": "image", f"timestamp_{CHAMPION}": "timestamp"}
    ).assign(model_version="pair")
    return join_labels(as_log, read_labels(store))


def store_comparison(store: ObjectStore, comparison: ShadowComparison) -> None:
    """The last comparison, where `pneumo promote` and the approval form read it."""
    body = json.dumps(comparison.summary(), indent=2, default=float)
    store.put(LAST_COMPARE_KEY, body.encode(), overwrite=True)


def last_comparison(store: ObjectStore) -> dict | None:
    """The stored last comparison, or None when none has run."""
    try:
        return json.loads(store.get(LAST_COMPARE_KEY))
    except ObjectNotFoundError:
        return None


def missing_evidence(summary: dict | None, version: str) -> str | None:
    """Why the shadow evidence does not support promoting `version` (None: it does)."""
    if summary is None:
        return "no shadow comparison has run: serve with --shadow, then `pneumo compare`"
    if summary["challenger"] != version:
        return (
            f"the last shadow comparison ({summary['checked_at']}) judged v{summary['challenger']}"
            f", not v{version}"
        )
    if summary["recommendation"] != PROMOTE:
        said = f"{summary['recommendation']}: {'; '.join(summary['reasons'])}"
        return f"the last shadow comparison ({summary['checked_at']}) says {said}"
    return None


class ShadowEvidenceError(PneumoError):
    """A promotion that the shadow evidence does not support, when it is required."""


def require_shadow_evidence(store: ObjectStore, model: str, version: str) -> None:
    """The monitored model moves only on a shadow comparison that recommends `version`; other
    models have no shadow traffic and are not held back."""
    if model != MONITORED_MODEL:
        return
    problem = missing_evidence(last_comparison(store), version)
    if problem:
        raise ShadowEvidenceError(
            f"{model} v{version} not promoted: {problem} (shadow evidence is required: "
            "PNEUMO_PROMOTION__REQUIRE_SHADOW_EVIDENCE; --force overrides)"
        )
