"""How often the drift check is wrong: false alarms on i.i.d. batches, detection of real shifts.

    python -m benchmarks.drift_quality --home STATE_DIR [--pool DIR] [--quick | --periods]
        [--site DIR] [--out CSV]

STATE_DIR holds a `pneumonia-resnet` champion with its reference profile (e.g. the state of a
full-scale `pneumo train` on ../shared/data/chest_xray_train224). The production pool is every
image under --pool (Kaggle layout) of a patient the champion never trained or validated on (the
latest manifest's train and val rows), so batches are new patients from the same source.

- False alarms: for batch sizes x NORMAL shares, i.i.d. batches (drawn without replacement,
  stratified by true label) checked exactly as `pneumo drift` does; the share that reports
  image shift (a false retrain) and prevalence shift (expected when the share differs from the
  reference's).
- Detection: each simulated shift at strengths 1/3, 2/3, 1, at the reference's class mix, per
  batch size: the share of batches reporting image shift, and the champion's AUC on the shifted
  sub-pool against the unshifted one (what the shift costs).
- The real shift: batches of the site's labelled films (--site, default
  `shared/data/chest_xray_site`: a later period of the same hospital) at its own class mix,
  against the training-period false alarms above. `--periods` measures only these two, with
  more batches.
- Rules: every candidate image-shift rule applied to the same checks' drifted columns, with the
  smallest batch at which it keeps false alarms <= 5 % at every mix and detects every shift
  costing >= 0.02 (and >= 0.01) AUC in >= 95 % of batches. The defaults (`DriftConfig.rule`,
  `drift_share`, `min_current`) come from this table.

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
from pipeline.data.shifts import DRIFT_KINDS, shift_image
from pipeline.monitor.drift import apply_drift_rule, check_drift
from pipeline.monitor.site import read_labelled_films
from pipeline.predict.champion import Champion, load_champion
from pipeline.predict.scoring import predict_batch
from pipeline.predict.steps import champion_cache
from pipeline.settings import DriftConfig, Settings

TRAIN224 = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray_train224"
SITE = TRAIN224.parent / "chest_xray_site"
FULL = {
    "sizes": (10, 20, 30, 50, 100, 300),
    "normal_shares": (0.2, 0.3, 0.4, 0.5, 0.6),
    "batches": 100,
    "shift_sizes": (10, 20, 30, 50, 100),
    "shift_batches": 100,
    "strengths": (1 / 3, 2 / 3, 1.0),
    "shift_pool": 400,
}
QUICK = {
    "sizes": (30,),
    "normal_shares": (0.4,),
    "batches": 20,
    "shift_sizes": (30,),
    "shift_batches": 10,
    "strengths": (1.0,),
    "shift_pool": 60,
}
# `--periods`: the real shift only. Training-period batches (the pool) against batches of the
# site's films of a later period, many batches at the sizes a drift window holds.
PERIODS = {
    "sizes": (50, 100),
    "normal_shares": (0.4,),
    "batches": 300,
    "shift_sizes": (),
    "shift_batches": 0,
    "strengths": (),
    "shift_pool": 0,
}
SITE_SIZES, SITE_BATCHES = (30, 50, 100), {"full": 100, "periods": 300}


def rule_name(cfg: DriftConfig) -> str:
    columns = "embedding" if cfg.rule == "embedding" else f"share>={cfg.drift_share:g}"
    together = f"|mmd<{cfg.representation_alpha:g}" if cfg.representation_alpha else ""
    return columns + together


# Candidate image-shift rules, the production default among them: the per-column rules alone,
# and the default share rule with the embedding components' joint test at three alphas.
RULES = {
    rule_name(cfg): cfg
    for cfg in (
        *(
            DriftConfig(rule="share", drift_share=share, representation_alpha=0)
            for share in (0.2, 0.3, 0.4, 0.5)
        ),
        DriftConfig(rule="embedding", representation_alpha=0),
        *(DriftConfig(representation_alpha=alpha) for alpha in (0.01, 0.05)),
        DriftConfig(),
    )
}
FALSE_ALARM_TARGET, DETECTION_TARGET = 0.05, 0.95
# The cost (0.02 AUC), and half of it: a strong champion shrugs off most simulated shifts,
# so few cost 0.02 and a minimum batch judged on them alone would rest on one or two shifts.
COSTLY_AUC_DROPS = (0.02, 0.01)


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


def check_batches(
    champion: Champion, table: pd.DataFrame, size: int, share: float, batches: int, seed: int
) -> list[dict] | None:
    """One record per batch: what `pneumo drift` decided and which image columns drifted."""
    rng = np.random.default_rng(seed)
    cfg = DriftConfig(min_current=1)  # the production rule; sizes below its minimum measured too
    records = []
    for _ in range(batches):
        batch = draw(table, size, share, rng)
        if batch is None:
            return None
        result = check_drift(champion.reference, batch, cfg, champion.threshold, html=False)
        records.append(
            {
                "batch": size,
                "normal_share": round(share, 2),
                "image_shift": result.image_shift,
                "prevalence_alert": bool(result.prevalence and result.prevalence.shifted),
                "drifted": tuple(result.drifted_columns),
                "representation_p": result.representation.p_value,
            }
        )
    return records


def auc(table: pd.DataFrame) -> float:
    return float(roc_auc_score(table["label"] == "PNEUMONIA", table["probability"]))


def false_alarms(champion: Champion, table: pd.DataFrame, plan: dict) -> list[dict]:
    """I.i.d. batches of unseen patients per batch size and class mix."""
    records = []
    for size in plan["sizes"]:
        for share in plan["normal_shares"]:
            checked = check_batches(champion, table, size, share, plan["batches"], seed=size)
            if checked is None:
                print(f"skipped: pool too small for {size} images at {share:.0%} NORMAL")
                continue
            records += [{"test": "iid", "strength": 0.0, "auc_drop": 0.0, **r} for r in checked]
    return records


def detections(champion: Champion, pool: pd.DataFrame, plan: dict, share: float) -> list[dict]:
    """Each shift kind and strength on one stratified sub-pool, per batch size."""
    sub = draw(pool, min(plan["shift_pool"], len(pool)), share, np.random.default_rng(0))
    sub = pool if sub is None else sub
    base = auc(score(champion, sub, "none", 0.0))
    records = []
    for kind in (k for k in DRIFT_KINDS if k != "none"):
        for strength in plan["strengths"]:
            started = time.perf_counter()
            shifted = score(champion, sub, kind, strength)
            cost = {"test": kind, "strength": round(strength, 2), "auc_drop": base - auc(shifted)}
            for size in (s for s in plan["shift_sizes"] if s <= len(sub) // 2):
                checked = check_batches(champion, shifted, size, share, plan["shift_batches"], 1)
                records += [{**cost, **r} for r in checked or []]
            print(
                f"{kind} {strength:.2f}: AUC drop {cost['auc_drop']:+.3f} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    return records


def site_detection(champion: Champion, site: Path, carved_auc: float, batches: int) -> list[dict]:
    """Batches of the site's labelled films (a later period of the same hospital: the real
    shift), at the site's own class mix; the AUC drop is carved test to site."""
    films = read_labelled_films(site, Settings().ingest.max_pixels)
    items = list(zip(films.rows["name"], films.data, strict=True))
    scored, _ = predict_batch(champion, items, Settings().ingest.max_pixels)
    scored = scored.assign(label=list(films.rows["label"]))
    share = float((scored["label"] == "NORMAL").mean())
    cost = {"test": "site films", "strength": 1.0, "auc_drop": carved_auc - auc(scored)}
    records = []
    for size in (s for s in SITE_SIZES if s <= len(scored) // 2):
        checked = check_batches(champion, scored, size, share, batches, seed=2)
        records += [{**cost, **r} for r in checked or []]
    print(f"site films: {len(scored)}, AUC drop from the carved test {cost['auc_drop']:+.3f}")
    return records


def rates(records: pd.DataFrame, rule: str) -> pd.DataFrame:
    """Per cell (test, strength, batch, mix): the share of batches `rule` calls image shift."""
    cfg = RULES[rule]
    columns = records["drifted"].map(lambda drifted: apply_drift_rule(list(drifted), cfg))
    alarm = columns | (records["representation_p"] < cfg.representation_alpha)
    cells = records.assign(alarm=alarm).groupby(
        ["test", "strength", "batch", "normal_share"], as_index=False
    )
    return cells.agg(
        auc_drop=("auc_drop", "first"),
        image_shift_rate=("alarm", "mean"),
        prevalence_alert_rate=("prevalence_alert", "mean"),
        batches=("alarm", "size"),
    ).assign(rule=rule)


def worst_rates(table: pd.DataFrame, auc_drop: float) -> pd.DataFrame:
    """Per batch size: the worst i.i.d. false-alarm rate and the worst detection rate of the
    shifts costing at least `auc_drop` AUC (NaN where none was measured at that size)."""
    iid = table[table["test"] == "iid"].groupby("batch")["image_shift_rate"].max()
    costly = table[(table["test"] != "iid") & (table["auc_drop"] >= auc_drop)]
    found = costly.groupby("batch")["image_shift_rate"].min()
    return pd.DataFrame({"false_alarms": iid, "detected": found})


def smallest_batch(table: pd.DataFrame, auc_drop: float) -> int | None:
    """The smallest batch size from which every measured size meets both targets for one rule
    (a larger batch must not raise more false alarms); None when none does."""
    worst = worst_rates(table, auc_drop)
    detected = worst["detected"].isna() | (worst["detected"] >= DETECTION_TARGET)
    meets = (worst["false_alarms"] <= FALSE_ALARM_TARGET) & detected
    candidates = [
        size
        for size in worst.index
        if meets[worst.index >= size].all() and not np.isnan(worst.loc[size, "detected"])
    ]
    return int(min(candidates)) if candidates else None


def print_tables(results: pd.DataFrame, production: str) -> None:
    """False alarms and detection of the production rule, then every rule's summary."""
    mine = results[results["rule"] == production]
    iid = mine[mine["test"] == "iid"]
    for column in ("image_shift_rate", "prevalence_alert_rate"):
        print(f"\ni.i.d. batches, {column} (rows: batch size, columns: NORMAL share)")
        print(iid.pivot(index="batch", columns="normal_share", values=column).to_string())
    shifts = mine[mine["test"] != "iid"]
    if not shifts.empty:
        print(f"\nshifted batches, image_shift_rate of rule {production} (columns: batch size)")
        table = shifts.pivot(
            index=["test", "strength", "auc_drop"], columns="batch", values="image_shift_rate"
        )
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    if (results["test"] == "site films").any():
        print(
            "\nsite films (a later period) detected / worst training-period false alarms, per "
            "rule and batch size"
        )
        for rule, table in results.groupby("rule", sort=False):
            found = table[table["test"] == "site films"].groupby("batch")["image_shift_rate"]
            iid = table[table["test"] == "iid"].groupby("batch")["image_shift_rate"].max()
            cells = " ".join(
                f"{size}:{found.mean().get(size, np.nan):.3f}/{iid.get(size, np.nan):.3f}"
                for size in sorted(set(found.mean().index) | set(iid.index))
            )
            print(f"  {rule:<22} {cells}")
    for auc_drop in COSTLY_AUC_DROPS:
        print(
            f"\nper rule and batch size: worst i.i.d. false-alarm rate / worst detection of the "
            f"shifts costing >= {auc_drop} AUC; smallest batch with <= {FALSE_ALARM_TARGET:.0%} "
            f"and >= {DETECTION_TARGET:.0%}"
        )
        for rule, table in results.groupby("rule", sort=False):
            worst = worst_rates(table, auc_drop)
            cells = " ".join(
                f"{size}:{row.false_alarms:.2f}/{row.detected:.2f}"
                for size, row in worst.iterrows()
            )
            print(f"  {rule:<22} {cells}  -> {smallest_batch(table, auc_drop)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--pool", type=Path, default=TRAIN224)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--periods", action="store_true", help="the site's shift only")
    parser.add_argument("--site", type=Path, default=SITE, help="labelled films of a later period")
    parser.add_argument("--max-false-alarms", type=float, default=FALSE_ALARM_TARGET)
    parser.add_argument("--out", type=Path, help="CSV of every rule's rate per cell")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    plan = QUICK if args.quick else PERIODS if args.periods else FULL
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
    records = false_alarms(champion, table, plan)
    if plan["strengths"]:
        records += detections(champion, pool, plan, reference_share)
    if not args.quick and args.site.is_dir():
        batches = SITE_BATCHES["periods" if args.periods else "full"]
        records += site_detection(champion, args.site, auc(table), batches)
    records = pd.DataFrame(records)
    results = pd.concat([rates(records, rule) for rule in RULES], ignore_index=True)
    production = rule_name(DriftConfig())
    print_tables(results, production)
    print(f"{time.perf_counter() - started:.0f} s")
    if args.out:
        results.to_csv(args.out, index=False)
    mine = results[(results["rule"] == production) & (results["test"] == "iid")]
    worst = mine["image_shift_rate"].max()
    if worst > args.max_false_alarms:
        print(f"FAIL: image-shift false alarms {worst:.3f} > {args.max_false_alarms}")
        sys.exit(1)


if __name__ == "__main__":
    main()
