"""How the model fares on test films with each acquisition shift the monitoring simulates.

The model card's "known failure modes" are measured, not asserted: each shift is applied to the
same test films (a stratified subset) and the decision rates are taken at the served threshold.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from pipeline.data.shifts import DRIFT_KINDS, shift_image
from pipeline.train.inputs import SplitData, predict_files
from pipeline.train.uncertainty import rate_metrics


def spread_subset(labels: np.ndarray, limit: int) -> np.ndarray:
    """Up to `limit` indices spread evenly over each class in proportion to its size."""
    picked = []
    for label in (0, 1):
        members = np.flatnonzero(labels == label)
        share = max(1, round(limit * len(members) / max(len(labels), 1)))
        if len(members):
            picked.append(
                members[np.linspace(0, len(members) - 1, min(share, len(members))).astype(int)]
            )
    return np.sort(np.concatenate(picked)) if picked else np.array([], int)


def measure_under_shifts(
    model: keras.Model, split: SplitData, threshold: float, limit: int
) -> pd.DataFrame:
    """One row per shift ("none" first): films, AUC, sensitivity, specificity, mean probability.

    `limit` bounds the films per shift (inference cost: shifts x limit images); 0 measures none.
    """
    labels = split.labels.astype(int)
    indices = spread_subset(labels, limit) if limit else np.array([], int)
    if len(indices) == 0:
        return pd.DataFrame()
    records = []
    with tempfile.TemporaryDirectory(prefix="pneumo-shifts-") as tmp:
        for kind in DRIFT_KINDS:
            paths = []
            for position, index in enumerate(indices):
                path = Path(tmp) / f"{kind}-{position}.jpeg"
                data = Path(split.paths[index]).read_bytes()
                path.write_bytes(data if kind == "none" else shift_image(data, kind, seed=position))
                paths.append(str(path))
            scores = predict_files(model, paths)
            rates = rate_metrics(labels[indices], scores, threshold)
            records.append(
                {"shift": kind, "n": len(indices), "roc_auc": rates["roc_auc"],
                 "sensitivity": rates["sensitivity"], "specificity": rates["specificity"],
                 "mean_probability": float(scores.mean())}
            )  # fmt: skip
    return pd.DataFrame(records)
