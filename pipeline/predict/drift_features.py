"""Per-image drift features: what an image looks like, and what the champion makes of it.

Image statistics come from a reduced gray decode (fast on multi-megapixel films); embedding
components come from the champion's pooled last-conv features, projected with a PCA fitted on
its training images and stored with the model, so drift is judged against what that model saw.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

from pipeline.progress import Progress, silent

STATS_SIDE = 256
PCA_COMPONENTS = 5
IMAGE_COLUMNS = (
    "mean", "std", "p05", "p50", "p95", "contrast", "entropy", "sharpness", "width", "height",
    "aspect_ratio", "polarity",
)  # fmt: skip
# The border band and the central strip `polarity` compares, as shares of the reduced image.
BORDER, CENTRE_ROWS, CENTRE_COLUMNS = 0.08, (0.25, 0.75), (0.375, 0.625)
EMBEDDING_COLUMNS = tuple(f"embedding_{i}" for i in range(PCA_COMPONENTS))
FEATURE_COLUMNS = (*IMAGE_COLUMNS, *EMBEDDING_COLUMNS, "probability")


def image_features(data: bytes) -> dict[str, float]:
    """Intensity statistics, entropy, sharpness (variance of the Laplacian), geometry, polarity."""
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    image.draft("L", (STATS_SIDE, STATS_SIDE))
    gray = image.convert("L")
    gray.thumbnail((STATS_SIDE, STATS_SIDE))
    pixels = np.asarray(gray, dtype=np.float64)
    p05, p50, p95 = np.percentile(pixels, [5, 50, 95])
    histogram = np.bincount(pixels.astype(np.uint8).ravel(), minlength=256) / pixels.size
    nonzero = histogram[histogram > 0]
    laplacian = (
        pixels[1:-1, :-2] + pixels[1:-1, 2:] + pixels[:-2, 1:-1] + pixels[2:, 1:-1]
        - 4 * pixels[1:-1, 1:-1]
    )  # fmt: skip
    return {
        "mean": float(pixels.mean()),
        "std": float(pixels.std()),
        "p05": float(p05),
        "p50": float(p50),
        "p95": float(p95),
        "contrast": float(p95 - p05),
        "entropy": float(-(nonzero * np.log2(nonzero)).sum()),
        "sharpness": float(laplacian.var()),
        "width": float(width),
        "height": float(height),
        "aspect_ratio": float(width / height),
        "polarity": polarity(pixels),
    }


def polarity(pixels: np.ndarray) -> float:
    """Mean of the central strip (mediastinum, spine) minus the mean of the border band.

    Positive on a chest film as published (bright body, dark surround): >= 32 on 99 % of 600
    official training films, never negative; an inverted film (the other photometric
    interpretation) turns it negative (<= -35 on 99 % of their inverted copies).
    """
    height, width = pixels.shape
    band = max(1, round(BORDER * min(height, width)))
    border = np.concatenate(
        [pixels[:band].ravel(), pixels[-band:].ravel(),
         pixels[:, :band].ravel(), pixels[:, -band:].ravel()]
    )  # fmt: skip
    rows = slice(round(CENTRE_ROWS[0] * height), round(CENTRE_ROWS[1] * height))
    columns = slice(round(CENTRE_COLUMNS[0] * width), round(CENTRE_COLUMNS[1] * width))
    return float(pixels[rows, columns].mean() - border.mean())


@dataclass(frozen=True)
class Projection:
    """A fitted PCA as plain arrays (stored as JSON, never pickled)."""

    mean: np.ndarray
    components: np.ndarray

    def transform(self, embeddings: np.ndarray) -> np.ndarray:
        return (embeddings - self.mean) @ self.components.T

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "components": self.components.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> Projection:
        return cls(np.asarray(data["mean"]), np.asarray(data["components"]))


def fit_projection(embeddings: np.ndarray, components: int = PCA_COMPONENTS) -> Projection:
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(components, *embeddings.shape), random_state=0).fit(embeddings)
    padded = np.zeros((components, embeddings.shape[1]))
    padded[: pca.components_.shape[0]] = pca.components_
    return Projection(pca.mean_, padded)


def feature_table(
    images: list[bytes],
    embeddings: np.ndarray,
    probabilities: np.ndarray,
    projection: Projection | None,
    progress: Progress = silent,
) -> pd.DataFrame:
    """One row of FEATURE_COLUMNS per image (embedding columns NaN without a projection)."""
    measured = [image_features(data) for data in progress(images, len(images), "drift features")]
    table = pd.DataFrame(measured, columns=list(IMAGE_COLUMNS))
    if projection is None:
        projected = np.full((len(images), len(EMBEDDING_COLUMNS)), np.nan)
    else:
        projected = projection.transform(embeddings)
    for index, column in enumerate(EMBEDDING_COLUMNS):
        table[column] = projected[:, index]
    table["probability"] = probabilities
    return table
