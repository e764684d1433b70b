"""Evaluation figures: training curves, confusion matrix, ROC and PR curves, augmentation grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from pipeline.figures import pyplot, save_figure
from pipeline.settings import TrainConfig
from pipeline.train.inputs import InputSpec, PreparedData, image_batches
from pipeline.train.models import build_augmenter


def plot_training_curves(
    history: dict[str, list[float]], out: Path, title: str, kept_epoch: int | None
) -> Path:
    """Loss (log scale), accuracy and AUC per epoch, train vs val, the kept epoch marked.

    The log scale keeps one diverged val loss (thousands) from flattening every other point.
    Phases (head, fine-tuning) are concatenated, numbered on.
    """
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    names = [m for m in ("loss", "accuracy", "auc") if m in history]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5))
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], marker="o", label="val")
        if kept_epoch is not None:
            ax.axvline(kept_epoch, color="grey", linestyle="--", label=f"kept ({kept_epoch})")
        if name == "loss":
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{name}{' (log scale)' if name == 'loss' else ''}")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
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


def plot_roc_pr(
    labels: np.ndarray, scores: np.ndarray, metrics: dict[str, float], out: Path, title: str
) -> Path:
    """ROC and precision-recall for PNEUMONIA as the positive class, the operating point (the
    threshold the model is served at, with the metrics reported for it) marked on both."""
    plt = pyplot()
    sensitivity, precision = metrics["sensitivity"], metrics["precision"]
    false_positive_rate = 1 - metrics["specificity"]
    point = f"threshold {metrics['threshold']:.3f}"
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(9, 4))
    skm.RocCurveDisplay.from_predictions(labels, scores, ax=roc, name=title)
    roc.plot([0, 1], [0, 1], linestyle="--", color="grey")
    roc.plot(false_positive_rate, sensitivity, "o", color="red", label=point)
    roc.set_xlabel("false positive rate (NORMAL called PNEUMONIA)")
    roc.set_ylabel("sensitivity (PNEUMONIA found)")
    skm.PrecisionRecallDisplay.from_predictions(labels, scores, ax=pr, name=title)
    pr.plot(sensitivity, precision, "o", color="red", label=point)
    pr.set_xlabel("recall = sensitivity (PNEUMONIA)")
    pr.set_ylabel("precision (PNEUMONIA calls that are right)")
    for ax, name in ((roc, "ROC"), (pr, "Precision-recall")):
        ax.set_title(f"{name}, positive class PNEUMONIA")
        ax.legend(fontsize=7, loc="lower right" if ax is roc else "lower left")
    return save_figure(fig, out)


def plot_augmentation_grid(
    data: PreparedData, cfg: TrainConfig, out: Path, per_class: int = 4
) -> Path:
    """Training images of both classes as stored (top) and as the model sees them (bottom)."""
    labels = data.train.labels
    picked = [int(i) for c in (0, 1) for i in np.flatnonzero(labels == c)[:per_class]]
    paths, chosen = [data.train.paths[i] for i in picked], labels[picked]
    plain = next(iter(image_batches(paths, InputSpec(cfg.image_size), len(paths))))
    augmented = build_augmenter(cfg.augment, cfg.seed)(plain, training=True).numpy()
    plain = plain.numpy()
    fig, axes = pyplot().subplots(2, len(paths), figsize=(2.2 * len(paths), 5.0), squeeze=False)
    for column, label in enumerate(chosen):
        for row, images in enumerate((plain, augmented)):
            axes[row, column].imshow(images[column][..., 0], cmap="gray", vmin=0, vmax=255)
            axes[row, column].axis("off")
        axes[0, column].set_title("PNEUMONIA" if label else "NORMAL", fontsize=8)
    settings = ", ".join(f"{k} {v}" for k, v in cfg.augment.model_dump().items())
    fig.suptitle(f"training images: as stored (top), augmented (bottom)\n{settings}", fontsize=8)
    return save_figure(fig, out)
