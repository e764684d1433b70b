"""Threshold choice and test metrics (scikit-learn): pure functions of labels and scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from pipeline.settings import ThresholdConfig


def choose_threshold(
    labels: np.ndarray, scores: np.ndarray, cfg: ThresholdConfig
) -> tuple[float, str]:
    """Decision threshold from the validation split; returns (threshold, how it was chosen).

    `target_sensitivity`: the highest threshold that still reaches the target recall, which
    keeps specificity as high as that recall allows. Falls back to Youden's J (max TPR - FPR)
    when asked, and to 0.5 when validation holds a single class.
    """
    if len(np.unique(labels)) < 2:
        return 0.5, "0.5 (validation split has one class)"
    # Every distinct score is a candidate: the default drops points inside runs of tied scores.
    fpr, tpr, thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    thresholds = np.minimum(thresholds, 1.0)  # roc_curve's first threshold is +inf
    if cfg.rule == "target_sensitivity":
        reaching = np.flatnonzero(tpr >= cfg.target_sensitivity)
        index = int(reaching[0])  # thresholds decrease along the curve
        return float(thresholds[index]), f"target sensitivity {cfg.target_sensitivity:.2f} on val"
    index = int(np.argmax(tpr - fpr))
    return float(thresholds[index]), "Youden's J on val"


def compute_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float, subtypes: pd.Series | None = None
) -> dict[str, float]:
    """Scalar test metrics at `threshold`; AUCs are threshold-free."""
    labels = labels.astype(int)
    predicted = (scores >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    both = len(np.unique(labels)) == 2
    result = {
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "precision": float(skm.precision_score(labels, predicted, zero_division=0)),
        "recall": float(skm.recall_score(labels, predicted, zero_division=0)),
        "specificity": float(tn / (tn + fp)) if tn + fp else 0.0,
        "f1": float(skm.f1_score(labels, predicted, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(labels, scores)) if both else float("nan"),
        "pr_auc": float(skm.average_precision_score(labels, scores)) if both else float("nan"),
        "tn": float(tn), "fp": float(fp), "fn": float(fn), "tp": float(tp),
        "n": float(len(labels)),
        "threshold": float(threshold),
        # The spread of the scores: a collapsed model gives every image (nearly) the same one.
        "score_min": float(scores.min()) if len(scores) else float("nan"),
        "score_max": float(scores.max()) if len(scores) else float("nan"),
    }  # fmt: skip
    result["sensitivity"] = result["recall"]
    result["ppv"] = result["precision"]
    result["npv"] = float(tn / (tn + fn)) if tn + fn else float("nan")
    if subtypes is not None:
        for subtype in ("bacteria", "virus"):
            mask = (subtypes == subtype).to_numpy() & (labels == 1)
            if mask.any():
                result[f"recall_{subtype}"] = float(predicted[mask].mean())
    return result


def collapse_note(metrics: dict[str, float], min_range: float) -> str | None:
    """Why the model counts as collapsed (one constant score for every image), or None.

    A collapsed model still gets an AUC (0.5) and a threshold; without this check its report
    reads like a weak model's, not like a model that learnt nothing.
    """
    low, high = metrics.get("score_min", float("nan")), metrics.get("score_max", float("nan"))
    if not high - low < min_range:  # NaN (no scores): nothing to judge
        return None
    return (
        f"collapsed: every test image scored {low:.4f}-{high:.4f} (spread {high - low:.1e} < "
        f"{min_range}), the model predicts one constant"
    )


def classification_report(labels: np.ndarray, scores: np.ndarray, threshold: float) -> str:
    predicted = (scores >= threshold).astype(int)
    return skm.classification_report(
        labels.astype(int),
        predicted,
        labels=[0, 1],
        target_names=["NORMAL", "PNEUMONIA"],
        zero_division=0,
    )
