"""How often the drift check is wrong: false alarms on i.i.d. batches, detection of real shifts.

    python -m benchmarks.drift_quality --home STATE_DIR [--pool DIR] [--quick] [--out CSV]

STATE_DIR holds a `pneumonia-resnet` champion with its reference profile (e.g. the state of a
full-scale `pneumo train` on ../shared/data/chest_xray_train224). The production pool is every
image under --pool (Kaggle layout) of a patient the champion never trained or validated on (the
latest manifest's train and val rows), so batches are new patients from the same source.

- False alarms: for batch sizes x NORMAL shares, i.i.d. batches (drawn without replacement,
  stratified by true label) checked exactly as `pneumo drift` does; the share that reports
  image shift (a false retrain) and prevalence shift (expected when the share differs from the
  reference's).
- Detection: each simulated shift at strengths 1/3, 2/3, 1, at the reference's class mix: the
  share of batches reporting image shift, and the champion's AUC on the shifted pool against
  the unshifted one (what the shift costs).

`--quick` (CI): one batch size, one mix, few batches, full-strength shifts; exits 1 when the
image-shift false-alarm rate exceeds --max-false-alarms, so the benchmark checks its own sanity.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from pipeline.adapters.backends import open_store
from pipeline.adapters.registry import Registry
from pipeline.data.ingest import discover_files, parse_patient_id
from pipeline.data.manifest import load_manifest
from pipeline.monitor.batch import predict_batch
from pipeline.monitor.champion import Champion, load_champion
from pipeline.monitor.drift import check_drift
from pipeline.monitor.simulate import DRIFT_KINDS, shift_image
from pipeline.monitor.steps import champion_cache
from pipeline.settings import DriftConfig, Settings

TRAIN224 = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray_train224"
FULL = {
    "sizes": (30, 100, 300),
    "normal_shares": (0.2, 0.3, 0.4, 0.5, 0.6),
    "batches": 100,
    "shift_batches": 50,
    "strengths": (1 / 3, 2 / 3, 1.0),
    "shift_pool": 300,
}
QUICK = {
    "sizes": (30,),
    "normal_shares": (0.4,),
    "batches": 20,
    "shift_batches": 10,
    "strengths": (1.0,),
    "shift_pool": 60,
}


def unseen_pool(pool: Path, home: Path) -> pd.DataFrame:
    """(path, label) of pool images whose patient is in no train or val row of the manifest."""
    _, manifest = load_manifest(open_store(Settings(home=home)))
    seen = set(manifest.loc[manifest["split"].isin(["train", "val"]), "patient_id"])
    rows = [
        {"path": str(source.path), "label": source.label}
        for source in discover_files(pool)
        if parse_patient_id(source.path.name) not in seen
    ]
    return pd.DataFrame(rows)


def score(champion: Champion, rows: pd.DataFrame, kind: str, strength: float) -> pd.DataFrame:
    """The rows `pneumo predict` logs for `rows`, shifted by `kind`, with their true labels."""
    images = [Path(p).read_bytes() for p in rows["path"]]
    if kind != "none":
        images = [shift_image(d, kind, seed=i, strength=strength) for i, d in enumerate(images)]
    scored, _ = predict_batch(
        champion, list(zip(rows["path"], images, strict=True)), Settings().ingest.max_pixels
    )
    labels = dict(zip(rows["path"], rows["label"], strict=True))
    return scored.assign(label=scored["image"].map(labels))


def draw(table: pd.DataFrame, size: int, normal_share: float, rng) -> pd.DataFrame | None:
    """One batch at the given true class mix, without replacement; None if the pool is short."""
    normal = table[table["label"] == "NORMAL"]
    pneumonia = table[table["label"] == "PNEUMONIA"]
    take = round(size * normal_share)
    if take > len(normal) or size - take > len(pneumonia):
        return None
    picked = [
        normal.iloc[rng.choice(len(normal), take, replace=False)],
        pneumonia.iloc[rng.choice(len(pneumonia), size - take, replace=False)],
    ]
    return pd.concat(picked).reset_index(drop=True)


def alarm_rates(
    champion: Champion, table: pd.DataFrame, size: int, share: float, batches: int, seed: int
) -> dict | None:
    """Shares of batches reporting image shift and prevalence shift, checked as in production."""
    rng = np.random.default_rng(seed)
    cfg = DriftConfig(min_current=1)
    image = prevalence = 0
    for _ in range(batches):
        batch = draw(table, size, share, rng)
        if batch is None:
            return None
        result = check_drift(champion.reference, batch, cfg, champion.threshold, html=False)
        image += result.image_shift
        prevalence += bool(result.prevalence and result.prevalence.shifted)
    return {"image_shift_rate": image / batches, "prevalence_alert_rate": prevalence / batches}


def auc(table: pd.DataFrame) -> float:
    return float(roc_auc_score(table["label"] == "PNEUMONIA", table["probability"]))


def false_alarms(champion: Champion, table: pd.DataFrame, plan: dict) -> list[dict]:
    rows = []
    for size in plan["sizes"]:
        for share in plan["normal_shares"]:
            rates = alarm_rates(champion, table, size, share, plan["batches"], seed=size)
            if rates is None:
                print(f"skipped: pool too small for {size} images at {share:.0%} NORMAL")
                continue
            rows.append({"test": "iid", "batch": size, "normal_share": share, **rates})
            print(rows[-1], flush=True)
    return rows


def detections(champion: Champion, pool: pd.DataFrame, plan: dict, share: float) -> list[dict]:
    """Each shift kind and strength on the same stratified sub-pool, batches of 100 (or fewer)."""
    rng = np.random.default_rng(0)
    sub = draw(pool, min(plan["shift_pool"], len(pool)), share, rng)
    sub = pool if sub is None else sub
    base = auc(score(champion, sub, "none", 0.0))
    size = min(100, len(sub) // 2)
    rows = []
    for kind in (k for k in DRIFT_KINDS if k != "none"):
        for strength in plan["strengths"]:
            shifted = score(champion, sub, kind, strength)
            rates = alarm_rates(champion, shifted, size, share, plan["shift_batches"], seed=1)
            rows.append(
                {
                    "test": kind,
                    "strength": round(strength, 2),
                    "batch": size,
                    "normal_share": round(share, 2),
                    "auc_drop": round(base - auc(shifted), 4),
                    **(rates or {}),
                }
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--pool", type=Path, default=TRAIN224)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--max-false-alarms", type=float, default=0.05)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    settings = Settings(home=args.home)
    champion = load_champion(Registry.from_settings(settings), champion_cache(settings))
    pool = unseen_pool(args.pool, args.home)
    print(
        f"champion {champion.name} v{champion.version}, reference {len(champion.reference)} "
        f"rows; pool {len(pool)} unseen images ({(pool['label'] == 'NORMAL').mean():.0%} NORMAL)"
    )
    table = score(champion, pool, "none", 0.0)
    reference_share = 1 - float((champion.reference["probability"] >= champion.threshold).mean())
    rows = false_alarms(champion, table, plan) + detections(champion, pool, plan, reference_share)
    results = pd.DataFrame(rows)
    print(results.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"{time.perf_counter() - started:.0f} s")
    if args.out:
        results.to_csv(args.out, index=False)
    worst = results.loc[results["test"] == "iid", "image_shift_rate"].max()
    if worst > args.max_false_alarms:
        print(f"FAIL: image-shift false alarms {worst:.3f} > {args.max_false_alarms}")
        sys.exit(1)


if __name__ == "__main__":
    main()
