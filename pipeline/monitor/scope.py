"""Is a film like the films the model knows? The intended-use check on every prediction.

Two kinds of signal, each a reason a caller can read:
- an out-of-distribution distance on the model's own pooled head features: the Mahalanobis
  distance, in a PCA of the reference films' features with a Ledoit-Wolf covariance, to those
  films (the validation films, held out from training, as the drift reference). Its cut-off is
  the quantile of the reference films' own distances that gives `false_flag_rate`, each film
  measured by a model fitted without its fold, so the cut-off is not set on films the model
  was fitted on. Measured on the full-scale champion (README): 1.4 % of the carved test films
  and 2.0 % of the site's films flagged; CT and MR films, flat and noise images all flagged;
- cheap image checks: a colour image is not a radiograph; a flat film shows nothing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline.settings import ScopeConfig

CHECK_SIDE = 128  # the cheap checks read a reduced decode
# On a 0-255 scale. Colour: the mean distance of a pixel's channels from their own gray; 0.0 on
# each of 1,373 film files (the bundled and shared samples and the site films, 1,038 of them
# stored as RGB). Spread: the gray film's standard deviation; at least 24.8 on the same films
# (median 57.7).
MAX_COLOUR, MIN_SPREAD = 8.0, 10.0


@dataclass(frozen=True)
class ScopeModel:
    """The fitted distance: PCA axes, the inverse covariance in them, and the cut-off."""

    mean: np.ndarray
    components: np.ndarray  # (k, features)
    precision: np.ndarray  # (k, k)
    cutoff: float
    false_flag_rate: float  # the rate the cut-off was set for, on the reference films
    reference_films: int

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row's features to the reference films."""
        centred = (embeddings - self.mean) @ self.components.T
        return np.sqrt(np.einsum("ij,jk,ik->i", centred, self.precision, centred))

    def to_json(self) -> dict:
        return {
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
            "precision": self.precision.tolist(),
            "cutoff": self.cutoff,
            "false_flag_rate": self.false_flag_rate,
            "reference_films": self.reference_films,
        }

    @classmethod
    def from_json(cls, data: dict) -> ScopeModel:
        return cls(
            np.asarray(data["mean"]),
            np.asarray(data["components"]),
            np.asarray(data["precision"]),
            float(data["cutoff"]),
            float(data["false_flag_rate"]),
            int(data["reference_films"]),
        )


def fit_distance(embeddings: np.ndarray, components: int) -> ScopeModel:
    """PCA + Ledoit-Wolf on `embeddings`, with no cut-off yet. Fewer axes than films/4: a
    covariance needs several films per axis even with shrinkage."""
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    k = max(1, min(components, len(embeddings) // 4, embeddings.shape[1]))
    pca = PCA(n_components=k, random_state=0).fit(embeddings)
    covariance = LedoitWolf().fit(pca.transform(embeddings))
    return ScopeModel(pca.mean_, pca.components_, covariance.precision_, np.inf, 0.0, 0)


def fit_scope(embeddings: np.ndarray, cfg: ScopeConfig, seed: int = 0) -> ScopeModel:
    """The distance fitted on all reference films, its cut-off from cross-fitted distances."""
    folds = np.random.default_rng(seed).permutation(len(embeddings)) % cfg.folds
    held_out = np.empty(len(embeddings))
    for fold in range(cfg.folds):
        inside = folds == fold
        held_out[inside] = fit_distance(embeddings[~inside], cfg.components).distances(
            embeddings[inside]
        )
    model = fit_distance(embeddings, cfg.components)
    cutoff = float(np.quantile(held_out, 1 - cfg.false_flag_rate))
    return ScopeModel(
        model.mean, model.components, model.precision, cutoff, cfg.false_flag_rate,
        len(embeddings),
    )  # fmt: skip


def image_reasons(data: bytes) -> list[str]:
    """The cheap checks on an encoded film: colour content and a flat film."""
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (CHECK_SIDE, CHECK_SIDE))
    image = image.convert("RGB")
    image.thumbnail((CHECK_SIDE, CHECK_SIDE))
    pixels = np.asarray(image, dtype=np.float64)
    reasons = []
    # Mean distance of each pixel's channels from their own gray: 0 for a gray film saved as RGB.
    colour = float(np.abs(pixels - pixels.mean(axis=-1, keepdims=True)).mean())
    if colour > MAX_COLOUR:
        reasons.append(f"a colour image, not a radiograph (colour {colour:.1f} > {MAX_COLOUR:g})")
    spread = float(pixels.mean(axis=-1).std())
    if spread < MIN_SPREAD:
        reasons.append(f"a flat image with nothing on it (spread {spread:.1f} < {MIN_SPREAD:g})")
    return reasons


def scope_reasons(
    images: list[bytes], embeddings: np.ndarray, model: ScopeModel | None
) -> tuple[np.ndarray, list[list[str]]]:
    """(distance per film, NaN without a fitted model; the reasons each film is outside the
    intended use, empty when it is inside)."""
    if model is None or len(images) == 0:
        distances = np.full(len(images), np.nan)
    else:
        distances = model.distances(embeddings)
    reasons = []
    for data, distance in zip(images, distances, strict=True):
        found = [f"outside intended use: {reason}" for reason in image_reasons(data)]
        if model is not None and distance > model.cutoff:
            found.append(
                f"unlike the training films (distance {distance:.1f} > {model.cutoff:.1f})"
            )
        reasons.append(found)
    return distances, reasons
