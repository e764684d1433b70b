import math

from pipeline.settings import GateConfig
from pipeline.train.gates import decide_gate

CFG = GateConfig(min_auc=0.8, min_sensitivity=0.85, min_specificity=0.5, max_auc_drop=0.01)
GOOD = {"roc_auc": 0.93, "sensitivity": 0.9, "specificity": 0.8}


def test_first_passing_model_passes_without_champion() -> None:
    decision = decide_gate(GOOD, None, CFG)
    assert decision.passed
    assert "no champion yet: regression check skipped" in decision.reasons


def test_each_floor_can_fail_on_its_own() -> None:
    decision = decide_gate({**GOOD, "sensitivity": 0.7}, None, CFG)
    assert not decision.passed
    assert decision.reasons == ["sensitivity 0.700 < floor 0.850"]


def test_regression_against_champion_fails() -> None:
    decision = decide_gate(GOOD, {**GOOD, "roc_auc": 0.95}, CFG)
    assert not decision.passed
    assert decision.reasons[0].startswith("regression: roc_auc 0.930 vs champion 0.950")


def test_small_drop_within_tolerance_passes() -> None:
    decision = decide_gate(GOOD, {**GOOD, "roc_auc": 0.935}, CFG)
    assert decision.passed and decision.summary().startswith("PASS")


def test_undefined_metric_fails_its_floor() -> None:
    decision = decide_gate({**GOOD, "roc_auc": math.nan}, None, CFG)
    assert not decision.passed and "roc_auc nan < floor 0.800" in decision.reasons


def test_a_collapsed_model_fails_first_with_its_score_range() -> None:
    """The issue's demo CNN: every probability within 0.6644-0.6645, AUC 0.5."""
    collapsed = {
        **GOOD,
        "roc_auc": 0.5,
        "sensitivity": 1.0,
        "specificity": 0.0,
        "score_min": 0.66441,
        "score_max": 0.66449,
    }
    decision = decide_gate(collapsed, None, CFG)
    assert not decision.passed
    assert decision.reasons[0].startswith("collapsed: every test image scored 0.6644-0.6645")
    assert "the model predicts one constant" in decision.reasons[0]


def test_a_spread_of_scores_is_not_a_collapse() -> None:
    spread = {**GOOD, "score_min": 0.01, "score_max": 0.99}
    assert decide_gate(spread, None, CFG).passed
    assert decide_gate(GOOD, None, CFG).passed  # no scores recorded: nothing to judge
