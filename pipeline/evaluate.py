"""Threshold choice, test metrics and evaluation plots (scikit-learn, matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from pipeline.plots import pyplot, save_figure
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
    fpr, tpr, thresholds = skm.roc_curve(labels, scores)
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
    }  # fmt: skip
    result["sensitivity"] = result["recall"]
    if subtypes is not None:
        for subtype in ("bacteria", "virus"):
            mask = (subtypes == subtype).to_numpy() & (labels == 1)
            if mask.any():
                result[f"recall_{subtype}"] = float(predicted[mask].mean())
    return result


def classification_report(labels: np.ndarray, scores: np.ndarray, threshold: float) -> str:
    predicted = (scores >= threshold).astype(int)
    return skm.classification_report(
        labels.astype(int),
        predicted,
        labels=[0, 1],
        target_names=["NORMAL", "PNEUMONIA"],
        zero_division=0,
    )


def plot_training_curves(history: dict[str, list[float]], out: Path, title: str) -> Path:
    """Loss, accuracy and AUC per epoch, train vs val (phases concatenated)."""
    plt = pyplot()
    names = [m for m in ("loss", "accuracy", "auc") if m in history]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5))
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], marker="o", label="val")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.suptitle(title)
    return save_figure(fig, out)


def plot_confusion(metrics: dict[str, float], out: Path, title: str) -> Path:
    plt = pyplot()
    matrix = np.array([[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]], dtype=int)
    fig, ax = plt.subplots(figsize=(4, 4))
    skm.ConfusionMatrixDisplay(matrix, display_labels=["NORMAL", "PNEUMONIA"]).plot(
        ax=ax, colorbar=False
    )
    ax.set_title(f"{title}\nthreshold {metrics['threshold']:.3f}")
    return save_figure(fig, out)


def plot_roc_pr(labels: np.ndarray, scores: np.ndarray, out: Path, title: str) -> Path:
    plt = pyplot()
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(9, 4))
    skm.RocCurveDisplay.from_predictions(labels, scores, ax=roc, name=title)
    roc.plot([0, 1], [0, 1], linestyle="--", color="grey")
    skm.PrecisionRecallDisplay.from_predictions(labels, scores, ax=pr, name=title)
    roc.set_title("ROC")
    pr.set_title("Precision-recall")
    return save_figure(fig, out)
