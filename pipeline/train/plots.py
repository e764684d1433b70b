"""Evaluation figures: training curves, confusion matrix, ROC and PR curves, augmentation grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from pipeline.figures import pyplot, save_figure
from pipeline.settings import TrainConfig
from pipeline.train.inputs import InputSpec, PreparedData, make_dataset
from pipeline.train.models import build_augmenter


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


def plot_augmentation_grid(data: PreparedData, cfg: TrainConfig, out: Path, count: int = 8) -> Path:
    """Training images as the model sees them after augmentation."""
    augmenter = build_augmenter(cfg.augment, cfg.seed)
    dataset = make_dataset(
        data.train.paths[:count],
        data.train.labels[:count],
        InputSpec(cfg.image_size),
        count,
        augmenter,
    )
    images, labels = next(iter(dataset))
    fig, axes = pyplot().subplots(1, len(labels), figsize=(2.2 * len(labels), 2.6), squeeze=False)
    for ax, image, label in zip(axes[0], images.numpy(), labels.numpy(), strict=True):
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
        ax.set_title("PNEUMONIA" if label else "NORMAL", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"augmented training samples ({cfg.augment.model_dump()})", fontsize=8)
    return save_figure(fig, out)
