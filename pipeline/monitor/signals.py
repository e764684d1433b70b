"""The three things a batch of predictions can tell apart, each with its own action.

- **Prevalence shift**: more (or fewer) children arrive with pneumonia. Seen in the predicted
  positive rate; alerted, never a retraining trigger: without new labels a retrained model
  cannot answer it, and the images themselves have not changed.
- **Image (covariate) shift**: the films look different (another scanner, exposure, processing).
  Judged on image statistics and embedding components against a reference *resampled to the
  batch's predicted class mix*, so a change of mix alone does not read as image shift (NORMAL
  and PNEUMONIA films differ in these features).
  Beside Evidently's per-column tests, one multivariate test of the embedding components
  (`check_representation`, Rabanser et al. 2019, "Failing Loudly"): a change of the films'
  content moves the components together, each too little for a per-column test to see.
- **Data quality**: films outside the accepted ranges (size, blank, inverted) and films refused
  at prediction (16-bit, unreadable). Counted per batch, alerted.
- **Films outside the intended use** (`pipeline.data.scope`): their share of the batch against
  the share the champion's cut-off lets through on its own validation films. A rising share
  says the traffic is no longer what the model was made for (another department's films,
  adults): alerted, never a trigger, since retraining on such films would widen the use
  without anyone deciding it.

Plain pandas and scipy; the Evidently tests run in `pipeline.monitor.drift`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.data.scope import REASON_STARTS
from pipeline.predict.drift_features import EMBEDDING_COLUMNS

# Features of the film itself. Width, height and aspect ratio are left to data quality: in this
# dataset NORMAL films are larger, so geometry follows the class mix, and sizes vary by site.
IMAGE_SHIFT_COLUMNS = (
    "mean", "std", "p05", "p50", "p95", "contrast", "entropy", "sharpness", *EMBEDDING_COLUMNS,
)  # fmt: skip


def predicted_positive(frame: pd.DataFrame, threshold: float) -> np.ndarray:
    return frame["probability"].to_numpy(dtype=float) >= threshold


@dataclass(frozen=True)
class PrevalenceCheck:
    """The batch's predicted PNEUMONIA rate against the reference's, with a band for its size."""

    reference_rate: float
    current_rate: float
    band: tuple[float, float]  # Wilson interval of the batch rate at 1 - alpha
    p_value: float  # Fisher's exact test, reference vs batch counts
    shifted: bool

    def summary(self) -> dict:
        return {
            "shifted": self.shifted,
            "reference_positive_rate": round(self.reference_rate, 3),
            "current_positive_rate": round(self.current_rate, 3),
            "current_band": [round(b, 3) for b in self.band],
            "p_value": round(self.p_value, 4),
        }


def check_prevalence(
    reference: pd.DataFrame, current: pd.DataFrame, threshold: float, alpha: float
) -> PrevalenceCheck:
    """Fisher's exact test on predicted positives, so the reference's own size counts too."""
    from scipy.stats import binomtest, fisher_exact

    ref, cur = predicted_positive(reference, threshold), predicted_positive(current, threshold)
    table = [[int(ref.sum()), int((~ref).sum())], [int(cur.sum()), int((~cur).sum())]]
    p_value = float(fisher_exact(table).pvalue)
    band = binomtest(int(cur.sum()), len(cur)).proportion_ci(1 - alpha, method="wilson")
    return PrevalenceCheck(
        reference_rate=float(ref.mean()),
        current_rate=float(cur.mean()),
        band=(float(band.low), float(band.high)),
        p_value=p_value,
        shifted=p_value < alpha,
    )


def match_class_mix(
    reference: pd.DataFrame, current: pd.DataFrame, threshold: float, seed: int = 0
) -> pd.DataFrame:
    """The largest subsample of `reference` with the batch's predicted positive share.

    Without replacement (repeated rows would look like a distribution the batch cannot match);
    seeded, so a check is repeatable. A batch predicted all one class gets the whole reference:
    there is no mix to match.
    """
    share = float(predicted_positive(current, threshold).mean())
    positive = predicted_positive(reference, threshold)
    pos, neg = reference[positive], reference[~positive]
    if share in (0.0, 1.0) or pos.empty or neg.empty:
        return reference
    size = min(len(pos) / share, len(neg) / (1 - share))
    take_pos = min(len(pos), round(size * share))
    take_neg = min(len(neg), round(size * (1 - share)))
    rng = np.random.default_rng(seed)
    picked = [
        pos.iloc[np.sort(rng.choice(len(pos), take_pos, replace=False))],
        neg.iloc[np.sort(rng.choice(len(neg), take_neg, replace=False))],
    ]
    return pd.concat(picked).reset_index(drop=True)


@dataclass(frozen=True)
class RepresentationCheck:
    """A kernel two-sample test of the batch's embedding components against the reference's."""

    mmd: float  # squared maximum mean discrepancy, RBF kernel
    p_value: float  # permutation test
    shifted: bool

    def summary(self) -> dict:
        return {
            "shifted": self.shifted,
            "mmd": round(self.mmd, 5),
            "p_value": round(self.p_value, 4),
        }


def check_representation(
    reference: pd.DataFrame, current: pd.DataFrame, alpha: float, permutations: int, seed: int = 0
) -> RepresentationCheck:
    """RBF-kernel MMD between the embedding components of `current` and `reference` (already
    resampled to the batch's class mix: NORMAL and PNEUMONIA films lie apart in them), with a
    permutation p-value; the bandwidth is the pooled median distance.

    Why these five components and not more: on the full-scale champion
    (docs/how-to/monitor-and-retrain.md, "Drift quality"), every batch of 100 site films was
    detected and none of 300 carved-test batches was, at alpha 0.02. With 20 or 50 axes fitted
    on the val films (the class mix not matched), 3 to 9 of 30 carved-test batches read as
    shifted: the fit's own films lie tighter than new ones along its minor axes.
    """
    columns = list(EMBEDDING_COLUMNS)
    ref = reference[columns].dropna().to_numpy(float)
    cur = current[columns].dropna().to_numpy(float)
    if len(ref) < 2 or len(cur) < 2:
        return RepresentationCheck(0.0, 1.0, False)
    pool = np.concatenate([ref, cur])
    squared = (pool**2).sum(axis=1)
    distances = np.maximum(squared[:, None] + squared[None] - 2 * pool @ pool.T, 0.0)
    bandwidth = float(np.median(distances[np.triu_indices(len(pool), 1)])) or 1.0
    kernel = np.exp(-distances / bandwidth)
    weights = np.concatenate([np.full(len(ref), -1 / len(ref)), np.full(len(cur), 1 / len(cur))])
    observed = float(weights @ kernel @ weights)
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(weights) for _ in range(permutations)])
    null = ((shuffled @ kernel) * shuffled).sum(axis=1)  # one product for every permutation
    p_value = float((1 + (null >= observed).sum()) / (permutations + 1))
    return RepresentationCheck(observed, p_value, p_value < alpha)


@dataclass(frozen=True)
class QualityCheck:
    rows: int
    flagged: dict[str, int]  # reason -> images
    alert: bool

    def summary(self) -> dict:
        return {"alert": self.alert, "rows": self.rows, "flagged": self.flagged}


def check_quality(
    current: pd.DataFrame,
    min_side: int,
    max_side: int,
    blank_std: float,
    max_share: float,
    rejected: pd.DataFrame | None = None,
) -> QualityCheck:
    """Scored images outside the accepted size range, blank or inverted, and images refused at
    prediction (`rejected`: 16-bit and other refusals, which no scored row shows); an alert
    when they are above `max_share` of all. Rows logged before `polarity` existed have none
    and are not judged on it.
    """
    flagged: dict[str, int] = {}
    scored_flags = 0
    if len(current):
        short = current[["width", "height"]].min(axis=1)
        long = current[["width", "height"]].max(axis=1)
        polarity = current.get("polarity", pd.Series(np.nan, index=current.index))
        reasons = {
            f"smaller than {min_side} px": short < min_side,
            f"larger than {max_side} px": long > max_side,
            f"blank (pixel std < {blank_std:g})": current["std"] < blank_std,
            "inverted (border brighter than the centre)": polarity < 0,
        }
        flagged = {reason: int(mask.sum()) for reason, mask in reasons.items() if mask.any()}
        scored_flags = int(np.logical_or.reduce([m.to_numpy() for m in reasons.values()]).sum())
    refused = 0 if rejected is None else len(rejected)
    if refused:
        flagged.update(refusal_reasons(rejected))
    rows = len(current) + refused
    share = (scored_flags + refused) / rows if rows else 0.0
    return QualityCheck(rows=rows, flagged=flagged, alert=share > max_share)


def refusal_reasons(rejected: pd.DataFrame) -> dict[str, int]:
    """Refused images by reason: each bit depth other than 8, films outside the intended use
    (PNEUMO_SCOPE__MODE=refuse), then every other refusal."""
    depth = rejected["bit_depth"]
    counts = depth[depth.notna() & (depth != 8)].value_counts().sort_index()
    reasons = {f"refused: {int(bits)}-bit, not 8-bit": int(n) for bits, n in counts.items()}
    outside = int(refused_out_of_scope(rejected).sum())
    if outside:
        reasons["refused: outside the intended use"] = outside
    other = len(rejected) - int(counts.sum()) - outside
    if other:
        reasons["refused: unreadable, empty, too large, or an unsupported type or mode"] = other
    return reasons


def refused_out_of_scope(rejected: pd.DataFrame) -> pd.Series:
    """Which refusals were the intended-use check's (their reasons as `scope_reasons` words
    them), not a file the model could not read."""
    issue = rejected.get("issue", pd.Series("", index=rejected.index)).fillna("").astype(str)
    return issue.str.startswith(REASON_STARTS)


@dataclass(frozen=True)
class ScopeCheck:
    """Films outside the intended use in the batch, flagged or refused, against the rate the
    champion's cut-off was set for."""

    rows: int  # films that say (scored rows logged with `in_scope`, and scope refusals)
    outside: int
    expected_rate: float
    p_value: float  # one-sided binomial test: more outside than `expected_rate` allows
    alert: bool

    def summary(self) -> dict:
        return {
            "alert": self.alert,
            "rows": self.rows,
            "outside": self.outside,
            "share": round(self.outside / self.rows, 3) if self.rows else None,
            "expected_rate": self.expected_rate,
            "p_value": round(self.p_value, 4),
        }


def check_scope(
    current: pd.DataFrame, rejected: pd.DataFrame | None, expected_rate: float, alpha: float
) -> ScopeCheck:
    """The share of films outside the intended use; an alert when a binomial test says it is
    above `expected_rate` at `alpha`. Rows logged before the check existed say nothing and
    are left out."""
    from scipy.stats import binomtest

    said = current.get("in_scope", pd.Series(dtype=object)).dropna().astype(bool)
    refused = 0 if rejected is None or rejected.empty else int(refused_out_of_scope(rejected).sum())
    rows, outside = len(said) + refused, int((~said).sum()) + refused
    p_value = (
        float(binomtest(outside, rows, expected_rate, alternative="greater").pvalue)
        if rows
        else 1.0
    )
    return ScopeCheck(rows, outside, expected_rate, p_value, p_value < alpha)
