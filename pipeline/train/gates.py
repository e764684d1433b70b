"""Evaluation gate: a pure function from metrics to a decision with reasons.

TFX-style: absolute floors, plus no regression against the current champion: a non-inferiority
test of the AUC difference on the same test images (paired patient bootstrap, `compare_auc`)
with a margin. The champion's scores must come from re-scoring it on the candidate's test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.settings import GateConfig
from pipeline.train.metrics import collapse_note
from pipeline.train.uncertainty import AucComparison


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return ("PASS: " if self.passed else "FAIL: ") + "; ".join(self.reasons)


def decide_gate(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    cfg: GateConfig,
    comparison: AucComparison | None = None,
) -> GateDecision:
    """Pass only if every floor holds, the model has not collapsed to one constant score, and it
    is not worse than the champion.

    "Not worse": with `comparison`, the 95 % interval of the AUC difference lies above
    -`max_auc_drop` (non-inferiority, shown, not assumed: a test split too small to show it
    fails); without one, the point AUC is within that margin of the champion's. With no champion
    the check is skipped (the first passing version becomes champion). A NaN metric (e.g. a test
    split with one class) fails its floor.
    """
    failures: list[str] = []
    notes: list[str] = []
    floors = {
        "roc_auc": cfg.min_auc,
        "sensitivity": cfg.min_sensitivity,
        "specificity": cfg.min_specificity,
    }
    for name, floor in floors.items():
        value = candidate.get(name, float("nan"))
        if not value >= floor:  # also catches NaN
            failures.append(f"{name} {value:.3f} < floor {floor:.3f}")
        else:
            notes.append(f"{name} {value:.3f} >= floor {floor:.3f}")
    collapsed = collapse_note(candidate, cfg.min_score_range)
    if collapsed:
        failures.insert(0, collapsed)
    if champion is None:
        notes.append("no champion yet: regression check skipped")
    elif comparison is not None:
        if comparison.non_inferior:
            notes.append(f"non-inferior: {comparison.describe()}")
        else:
            failures.append(f"non-inferiority not shown: {comparison.describe()}")
    else:
        allowed = champion["roc_auc"] - cfg.max_auc_drop
        line = (
            f"roc_auc {candidate['roc_auc']:.3f} vs champion {champion['roc_auc']:.3f}"
            f" (tolerance {cfg.max_auc_drop:.3f})"
        )
        if not candidate["roc_auc"] >= allowed:
            failures.append(f"regression: {line}")
        else:
            notes.append(f"no regression: {line}")
    return GateDecision(passed=not failures, reasons=failures or notes)
