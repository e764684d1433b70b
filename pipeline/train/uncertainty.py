"""95 % confidence intervals by bootstrap resampling of patients.

Films of one patient are not independent (follow-ups, near-identical views): resampling images
would count them as separate cases and give intervals that are too narrow. Each resample draws
patients with replacement and takes every image of each drawn patient.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

INTERVAL_METRICS = ("roc_auc", "sensitivity", "specificity", "ppv", "npv")


def rank_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic on mid-ranks: equal to sklearn's `roc_auc_score`
    (ties count one half), without its input validation, which costs ~2 ms a call: a bootstrap
    calls this thousands of times per evaluation. Labels must hold both classes."""
    positive = np.asarray(labels) == 1
    count = int(positive.sum())
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - count * (count + 1) / 2) / (count * (len(ranks) - count)))


def rate_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """AUC and the four rates at `threshold`; NaN where the sample leaves one undefined."""
    predicted = scores >= threshold
    positive = labels == 1
    tp, fn = np.sum(predicted & positive), np.sum(~predicted & positive)
    fp, tn = np.sum(predicted & ~positive), np.sum(~predicted & ~positive)

    def ratio(a: int, b: int) -> float:
        return float(a / (a + b)) if a + b else float("nan")

    both = positive.any() and not positive.all()
    return {
        "roc_auc": rank_auc(labels, scores) if both else float("nan"),
        "sensitivity": ratio(tp, fn),
        "specificity": ratio(tn, fp),
        "ppv": ratio(tp, fp),
        "npv": ratio(tn, fn),
    }


def patient_groups(patients: Sequence[str]) -> list[np.ndarray]:
    """The image indices of each patient."""
    if len(patients) == 0:
        return []
    _, inverse = np.unique(np.asarray(patients, dtype=str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(order, bounds)


def patient_resamples(patients: Sequence[str], resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The image indices of each bootstrap resample: patients drawn with replacement, each with
    every one of its images. An empty split has nothing to resample."""
    groups = patient_groups(patients)
    rng = np.random.default_rng(seed)
    for _ in range(resamples if groups else 0):
        yield np.concatenate([groups[i] for i in rng.integers(len(groups), size=len(groups))])


def percentile_interval(
    values: Sequence[float], resamples: int, level: float = 0.95
) -> tuple[float, float]:
    """The percentile interval of the defined values of `resamples` draws; (NaN, NaN) when
    fewer than half of them were defined, rather than a misleading range."""
    if len(values) * 2 < resamples:
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def bootstrap_intervals(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    patients: Sequence[str],
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of `INTERVAL_METRICS` over patient-level resamples.

    A resample in which a metric is undefined (no negatives, say) is left out of that metric
    (see `percentile_interval`).
    """
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
    draws: dict[str, list[float]] = {name: [] for name in INTERVAL_METRICS}
    for chosen in patient_resamples(patients, resamples, seed):
        for name, value in rate_metrics(labels[chosen], scores[chosen], threshold).items():
            if not np.isnan(value):
                draws[name].append(value)
    return {name: percentile_interval(values, resamples, level) for name, values in draws.items()}


def interval_columns(intervals: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Flat metric names for reports and MLflow: `roc_auc_ci_low`, `roc_auc_ci_high`, ..."""
    return {
        f"{name}_ci_{side}": value
        for name, (low, high) in intervals.items()
        for side, value in (("low", low), ("high", high))
    }


def with_interval(metrics: dict[str, float], name: str) -> str:
    """`0.953 [0.931, 0.972]` when the metrics hold the interval, else `0.953`."""
    low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
    if low is None or high is None or np.isnan(low) or np.isnan(high):
        return f"{metrics[name]:.3f}"
    return f"{metrics[name]:.3f} [{low:.3f}, {high:.3f}]"


def acquisition_groups(rows: pd.DataFrame) -> dict[str, pd.Series]:
    """What the manifest knows to split the test images by: pneumonia subtype, and how each
    film was acquired (original size, colour mode, bit depth, the source's own split)."""
    megapixels = rows["width"].astype(float) * rows["height"].astype(float) / 1e6
    size = pd.cut(
        megapixels, [0, 1, 2, 4, np.inf], right=False, labels=["<1", "1-2", "2-4", ">=4"]
    ).astype(str)
    return {
        "subtype": rows["subtype"].fillna("normal").astype(str),
        "megapixels": size,
        "mode": rows["mode"].astype(str),
        "bit_depth": rows["bit_depth"].astype(str),
        "source_split": rows["source_split"].astype(str),
    }


def subgroup_table(
    rows: pd.DataFrame,
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    resamples: int = 500,
) -> pd.DataFrame:
    """One row per subgroup of each `acquisition_groups` grouping: its count, positives, and
    each metric with its patient-bootstrap interval (NaN where the subgroup cannot define it,
    e.g. specificity among viral pneumonia)."""
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
    patients = rows["patient_id"].astype(str).to_numpy()
    records = []
    for grouping, values in acquisition_groups(rows).items():
        for value in sorted(values.unique()):
            mask = (values == value).to_numpy()
            point = rate_metrics(labels[mask], scores[mask], threshold)
            intervals = bootstrap_intervals(
                labels[mask], scores[mask], threshold, patients[mask], resamples
            )
            records.append(
                {"grouping": grouping, "group": value, "n": int(mask.sum()),
                 "positives": int(labels[mask].sum()), **point, **interval_columns(intervals)}
            )  # fmt: skip
    return pd.DataFrame(records)


@dataclass(frozen=True)
class AucComparison:
    """Candidate minus champion AUC on the same test images, with its paired patient-bootstrap
    interval, judged against a non-inferiority margin."""

    difference: float
    low: float
    high: float
    p_value: float  # share of resamples at or below -margin: how likely "inferior" still is
    margin: float

    @property
    def non_inferior(self) -> bool:
        """The whole 95 % interval lies above -margin (NaN, too few usable resamples: False)."""
        return bool(self.low > -self.margin)

    def describe(self) -> str:
        if np.isnan(self.low):
            return (
                f"AUC difference {self.difference:+.3f} vs champion, no interval (the test split "
                "has too few patients of one class to resample)"
            )
        return (
            f"AUC difference {self.difference:+.3f} vs champion [95 % CI {self.low:+.3f}, "
            f"{self.high:+.3f}], margin -{self.margin:.3f}, p {self.p_value:.3f}"
        )


def compare_auc(
    labels: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    patients: Sequence[str],
    margin: float,
    resamples: int = 1000,
    seed: int = 0,
) -> AucComparison:
    """Paired bootstrap of the AUC difference: each resample draws patients and scores both
    models on the same images, so what they share does not widen the interval."""
    labels = np.asarray(labels).astype(int)
    candidate, champion = np.asarray(candidate, float), np.asarray(champion, float)

    def difference(index: np.ndarray) -> float:
        picked = labels[index]
        if picked.min() == picked.max():
            return float("nan")
        return rank_auc(picked, candidate[index]) - rank_auc(picked, champion[index])

    resampled = patient_resamples(patients, resamples, seed)
    draws = np.array([difference(chosen) for chosen in resampled])
    draws = draws[~np.isnan(draws)]
    point = difference(np.arange(len(labels))) if len(labels) else float("nan")
    low, high = percentile_interval(draws, resamples)
    if np.isnan(low):
        return AucComparison(point, low, high, float("nan"), margin)
    return AucComparison(point, low, high, float(np.mean(draws <= -margin)), margin)
