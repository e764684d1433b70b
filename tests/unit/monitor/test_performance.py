"""Realised performance and its drop rule, on labelled rows made to a known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.monitor.performance import Validated, judge_drops, measure_version, realised_metrics
from pipeline.settings import PerformanceConfig

CFG = PerformanceConfig(min_per_class=30, resamples=300)
VALIDATED = Validated({"roc_auc": 0.97, "sensitivity": 0.95, "specificity": 0.90}, "test split")


def labelled(
    negatives: int, false_positive_rate: float, positives: int = 60, seed: int = 0
) -> pd.DataFrame:
    """Rows whose served decisions give exactly the asked specificity; sensitivity 0.95."""
    rng = np.random.default_rng(seed)
    truth = np.r_[np.zeros(negatives, int), np.ones(positives, int)]
    false_pos = round(negatives * false_positive_rate)
    missed = round(positives * 0.05)
    high = np.r_[np.arange(negatives) < false_pos, np.arange(positives) >= missed]
    probability = np.where(high, rng.uniform(0.6, 1.0, truth.size), rng.uniform(0, 0.4, truth.size))
    return pd.DataFrame(
        {
            "truth": truth,
            "probability": probability,
            "threshold": 0.5,
            "patient_id": [f"p{i}" for i in range(truth.size)],
        }
    )


def test_a_specificity_well_below_validated_is_a_drop_and_others_are_not() -> None:
    result = measure_version(labelled(80, 0.40), "pneumonia-resnet", "3", VALIDATED, CFG)
    assert result.metrics["specificity"] == pytest.approx(0.60)
    assert result.metrics["sensitivity"] == pytest.approx(0.95, abs=0.01)
    # The false positives score high, so the ranking fell too; sensitivity held.
    assert result.dropped == ["roc_auc", "specificity"] and result.alert
    assert result.films == {"films": 140, "patients": 140, "NORMAL": 80, "PNEUMONIA": 60}
    assert any("specificity 0.600" in r and "DROP" in r for r in result.reasons)


def test_a_small_loss_within_the_tolerance_is_no_drop() -> None:
    result = measure_version(labelled(200, 0.12), "pneumonia-resnet", "3", VALIDATED, CFG)
    assert result.metrics["specificity"] == pytest.approx(0.88)
    assert not result.alert


def test_too_few_films_of_a_class_are_not_judged() -> None:
    # 20 NORMAL films, half of them called PNEUMONIA: not judged below 30.
    result = measure_version(labelled(20, 0.5), "pneumonia-resnet", "3", VALIDATED, CFG)
    assert "specificity" not in result.dropped
    assert any("not judged, 20 labelled films" in r for r in result.reasons)


def test_rates_count_the_decision_each_film_was_served_with() -> None:
    rows = labelled(40, 0.0)
    # A film at 0.45 served under a threshold of 0.4 (a site threshold then in force) was
    # called PNEUMONIA: a false positive, although 0.45 < 0.5.
    rows.loc[0, ["probability", "threshold"]] = [0.45, 0.4]
    metrics = realised_metrics(rows, CFG)
    assert metrics["specificity"] == pytest.approx(39 / 40)
    assert 0.9 < metrics["roc_auc"] <= 1.0  # ranked by probability, not by margin


def test_an_unmeasurable_metric_is_said_so() -> None:
    counts = {0: 50, 1: 0}
    metrics = {"roc_auc": float("nan"), "sensitivity": float("nan"), "specificity": 0.5,
               "specificity_ci_low": 0.4, "specificity_ci_high": 0.6}  # fmt: skip
    dropped, reasons = judge_drops(metrics, VALIDATED.metrics, counts, CFG)
    assert dropped == ["specificity"]
    assert sum("not measurable" in r for r in reasons) == 2
