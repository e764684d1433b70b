"""Evaluation gate: a pure function from metrics to a decision with reasons.

TFX-style: absolute floors, plus no regression against the current champion beyond a tolerance.
The champion's metrics must come from re-scoring it on the same test split as the candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.settings import GateConfig
from pipeline.train.metrics import collapse_note


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return ("PASS: " if self.passed else "FAIL: ") + "; ".join(self.reasons)


def decide_gate(
    candidate: dict[str, float], champion: dict[str, float] | None, cfg: GateConfig
) -> GateDecision:
    """Pass only if every floor holds, the model has not collapsed to one constant score, and the
    AUC is not below the champion's by more than allowed.

    With no champion the regression check is skipped (the first passing version becomes
    champion). A NaN metric (e.g. a test split with one class) fails its floor.
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
