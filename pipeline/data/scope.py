"""Is a film like the films the model knows? The intended-use check on every prediction.

Two kinds of signal, each a reason a caller can read:
- an out-of-distribution distance on the model's own pooled head features: the Mahalanobis
  distance, in a PCA of the reference films' features with a Ledoit-Wolf covariance, to those
  films (the validation films, held out from training, as the drift reference). Its cut-off is
  the quantile of the reference films' own distances that gives `false_flag_rate`, each film
  measured by a model fitted without its fold, so the cut-off is not set on films the model
  was fitted on. Measured on the full-scale champion (`benchmarks/scope_quality.py`,
  docs/explanation/intended-use.md):
  at the default 1 %, 1.1 % of the carved test films and 2.0 % of the site's films flagged;
  every non-chest image tried (CT, MR, NM, photographs, flat and noise images) flagged;
- cheap image checks: a colour image is not a radiograph; a flat film shows nothing;
- a DICOM film's own tags, where present: modality, body part, view (a lateral film is out) and
  the patient's age against the training population's (`ScopeConfig`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
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
# DICOM age string (PS3.5 AS): three digits and a unit, days, weeks, months or years.
AGE = re.compile(r"^(\d{3})([DWMY])$")
DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}
# How every reason starts: the drift check tells scope refusals from unreadable files by it.
OUTSIDE_USE, UNLIKE_TRAINING = "outside intended use: ", "unlike the training films "
REASON_STARTS = (OUTSIDE_USE, UNLIKE_TRAINING)


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


def age_in_years(value: str) -> int | None:
    """Whole years of a DICOM age string ("004Y", "018M"); None when it is not one."""
    match = AGE.match(value.strip().upper())
    if match is None:
        return None
    return int(int(match[1]) * DAYS_PER_UNIT[match[2]] // 365.25)


def tag_reasons(tags: dict[str, str], cfg: ScopeConfig) -> list[str]:
    """The DICOM tags that put a film outside the intended use. An absent tag says nothing (many
    exports drop them); a present one must match what the training films were."""
    expected = {
        "Modality": (cfg.modalities, "a radiograph"),
        "BodyPartExamined": (cfg.body_parts, "a chest film"),
        "ViewPosition": (cfg.views, "a frontal film"),
    }
    reasons = []
    for tag, (allowed, what) in expected.items():
        value = tags.get(tag, "").upper()
        if value and value not in allowed:
            reasons.append(f"{tag} {value} (expected {' or '.join(allowed)}: {what})")
    age = tags.get("PatientAge", "")
    years, (low, high) = age_in_years(age), cfg.age_years
    if years is not None and not low <= years <= high:
        reasons.append(
            f"PatientAge {age.strip()} (the training films are of children aged {low} to {high})"
        )
    return reasons


def scope_reasons(
    images: list[bytes],
    embeddings: np.ndarray,
    model: ScopeModel | None,
    tag_findings: Sequence[list[str]] | None = None,
) -> tuple[np.ndarray, list[list[str]]]:
    """(distance per film, NaN without a fitted model; the reasons each film is outside the
    intended use, empty when it is inside). `tag_findings`: per film, what `tag_reasons` found
    in its DICOM tags."""
    if model is None or len(images) == 0:
        distances = np.full(len(images), np.nan)
    else:
        distances = model.distances(embeddings)
    tag_findings = tag_findings or [[] for _ in images]
    reasons = []
    for data, distance, tagged in zip(images, distances, tag_findings, strict=True):
        found = [OUTSIDE_USE + reason for reason in [*tagged, *image_reasons(data)]]
        if model is not None and distance > model.cutoff:
            found.append(f"{UNLIKE_TRAINING}(distance {distance:.1f} > {model.cutoff:.1f})")
        reasons.append(found)
    return distances, reasons
