"""Dataset exploration figures: class distribution per split and sample images per class.

matplotlib is imported only when a figure is drawn (pipeline.figures), so the library imports
fast and never needs a display.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from pipeline.adapters.storage import ObjectStore
from pipeline.data.ingest import LABELS, SPLITS
from pipeline.figures import pyplot, save_figure


def class_counts(manifest: pd.DataFrame) -> pd.DataFrame:
    """Usable images per split and label, with the PNEUMONIA share and NORMAL:PNEUMONIA ratio."""
    usable = manifest[~manifest["quarantined"]]
    counts = (
        usable.groupby(["split", "label"]).size().unstack(fill_value=0)
        .reindex(index=[s for s in SPLITS if s in set(usable["split"])], columns=list(LABELS))
        .fillna(0).astype(int)
    )  # fmt: skip
    counts["total"] = counts.sum(axis=1)
    counts["pneumonia_share"] = (counts["PNEUMONIA"] / counts["total"]).round(3)
    counts["pneumonia_per_normal"] = (
        counts["PNEUMONIA"] / counts["NORMAL"].where(counts["NORMAL"] > 0)
    ).round(2)
    return counts


def plot_class_distribution(counts: pd.DataFrame, out: Path) -> Path:
    """Grouped bar chart of images per class for each split."""
    fig, ax = pyplot().subplots(figsize=(6, 4))
    counts[list(LABELS)].plot.bar(ax=ax, color=["#4c72b0", "#dd8452"], rot=0)
    for container in ax.containers:
        ax.bar_label(container)
    ax.set_title("Images per class and split (usable images)")
    ax.set_xlabel("split")
    ax.set_ylabel("images")
    return save_figure(fig, out)


def plot_sample_grid(
    manifest: pd.DataFrame, store: ObjectStore, out: Path, per_class: int = 6, seed: int = 0
) -> Path:
    """A row of random training images per class, titled with patient and subtype."""
    from PIL import Image

    usable = manifest[~manifest["quarantined"] & (manifest["split"] == "train")]
    fig, axes = pyplot().subplots(
        len(LABELS), per_class, figsize=(2.2 * per_class, 2.6 * len(LABELS))
    )
    for row, label in enumerate(LABELS):
        rows = usable[usable["label"] == label]
        picked = rows.sample(n=min(per_class, len(rows)), random_state=seed)
        for col in range(per_class):
            ax = axes[row][col]
            ax.axis("off")
            if col >= len(picked):
                continue
            item = picked.iloc[col]
            image = Image.open(io.BytesIO(store.get(item["key"])))
            image.draft("L", (256, 256))
            ax.imshow(image.convert("L"), cmap="gray")
            ax.set_title(f"{label}\n{item['patient_id']} ({item['subtype']})", fontsize=8)
    return save_figure(fig, out)
