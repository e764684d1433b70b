"""Assign train/val/test by patient, stratified by label, reproducibly.

Patient ids are numbered per official split in the Kermany release (170 `personN` ids occur in
both official train and test), so patients are grouped only inside the split being carved; the
official test split, when present, stays the test split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.settings import SplitConfig


def carve_by_patient(frame: pd.DataFrame, fraction: float, seed: int) -> pd.Series:
    """Boolean mask of rows whose patients go to the holdout, about `fraction` of each label.

    Patients are drawn in a seeded random order per label until the holdout reaches its share of
    that label's images, so no patient is split and the class ratio is kept.
    """
    holdout = pd.Series(False, index=frame.index)
    for _, rows in frame.groupby("label", sort=True):
        counts = rows.groupby("patient_id").size().sort_index()
        if len(counts) < 2:
            continue  # one patient cannot be shared between two splits
        order = np.random.default_rng(seed).permutation(len(counts))
        target = fraction * counts.sum()
        chosen: list[str] = []
        taken = 0
        for position in order:
            if taken >= target or len(chosen) == len(counts) - 1:
                break
            chosen.append(counts.index[position])
            taken += int(counts.iloc[position])
        holdout |= frame["patient_id"].isin(chosen) & (frame["label"] == rows["label"].iloc[0])
    return holdout


def assign_splits(manifest: pd.DataFrame, cfg: SplitConfig) -> pd.DataFrame:
    """Return a copy with `split` set: official test stays test, val is carved from train.

    Official val images stay in val (16 in the Kaggle release: too few alone). What the layout
    lacks is carved from official train the same way: test first, then val from the rest.
    """
    out = manifest.copy()
    out["split"] = out["source_split"]
    train = out["source_split"] == "train"
    if not (out["source_split"] == "test").any():
        to_test = carve_by_patient(out[train], cfg.test_fraction, cfg.seed)
        out.loc[to_test[to_test].index, "split"] = "test"
        train &= out["split"] == "train"
    # Rescale so val is val_fraction of the original train, even after test was carved.
    remaining_share = train.sum() / max((out["source_split"] == "train").sum(), 1)
    val_fraction = min(cfg.val_fraction / max(remaining_share, 1e-9), 0.9)
    to_val = carve_by_patient(out[train], val_fraction, cfg.seed + 1)
    out.loc[to_val[to_val].index, "split"] = "val"
    return out


def labeled_left_out(manifest: pd.DataFrame, labeled: pd.DataFrame) -> pd.Series:
    """Why each labelled row stays out of the manifest, or None for the rows that join it.

    Rows already in the manifest (same sha256) and rows of patients who are in val or test are
    left out, so new labels never leak into the splits the gates measure on.
    """
    held_out = set(manifest.loc[manifest["split"].isin(["val", "test"]), "patient_id"])
    reasons = pd.Series(None, index=labeled.index, dtype=object)
    reasons[labeled["sha256"].isin(set(manifest["sha256"]))] = "already in the manifest"
    reasons[labeled["patient_id"].isin(held_out)] = "patient is in val/test"
    return reasons


def merge_labeled(
    manifest: pd.DataFrame, labeled: pd.DataFrame, judge_fraction: float = 0.0, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add newly labelled images; returns (manifest, rows left out).

    About `judge_fraction` of their new patients (per label) go to the `site` split: films of
    the new kind that no model trains on, kept to judge challenger against champion and to set
    the new champion's threshold. The rest join `train`. A patient keeps the split it first got,
    so a later round never moves judging films into training.
    """
    reasons = labeled_left_out(manifest, labeled)
    kept = labeled[reasons.isna()].assign(split="train", origin="labeled")
    judged = set(manifest.loc[manifest["split"] == "site", "patient_id"])
    known = judged | set(manifest.loc[manifest["split"] == "train", "patient_id"])
    new = kept[~kept["patient_id"].isin(known)]
    if judge_fraction > 0 and len(new):
        to_site = carve_by_patient(new, judge_fraction, seed)
        judged |= set(new.loc[to_site, "patient_id"])
    kept.loc[kept["patient_id"].isin(judged), "split"] = "site"
    left_out = labeled[reasons.notna()].assign(reason=reasons[reasons.notna()])
    return pd.concat([manifest, kept], ignore_index=True), left_out[
        ["path", "patient_id", "reason"]
    ]
