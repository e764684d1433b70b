"""The three things a batch of predictions can tell apart, each with its own action.

- **Prevalence shift**: more (or fewer) children arrive with pneumonia. Seen in the predicted
  positive rate; alerted, never a retraining trigger: without new labels a retrained model
  cannot answer it, and the images themselves have not changed.
- **Image (covariate) shift**: the films look different (another scanner, exposure, processing).
  Judged on image statistics and embedding components against a reference *resampled to the
  batch's predicted class mix*, so a change of mix alone does not read as image shift (NORMAL
  and PNEUMONIA films differ in these features).
- **Data quality**: films outside the accepted ranges (size, blank, inverted) and films refused
  at prediction (16-bit, unreadable). Counted per batch, alerted.

Plain pandas and scipy; the Evidently tests run in `pipeline.monitor.drift`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.monitor.drift_features import EMBEDDING_COLUMNS

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
    """Refused images by reason: each bit depth other than 8, then every other refusal."""
    depth = rejected["bit_depth"]
    counts = depth[depth.notna() & (depth != 8)].value_counts().sort_index()
    reasons = {f"refused: {int(bits)}-bit, not 8-bit": int(n) for bits, n in counts.items()}
    other = len(rejected) - int(counts.sum())
    if other:
        reasons["refused: unreadable, empty, too large, or an unsupported type or mode"] = other
    return reasons
